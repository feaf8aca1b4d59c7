#!/bin/sh
# Write one dated backup of the returnvisit database into DIR (default /var/backups/returnvisit) and
# delete this script's backups older than RETURNVISIT_BACKUP_KEEP_DAYS days (default 14).
#   SQLite:     returnvisit backup DIR/returnvisit-YYYYmmdd-HHMMSS.db      (online backup API)
#   PostgreSQL: pg_dump --format=custom --file=DIR/returnvisit-YYYYmmdd-HHMMSS.dump
# The database is the one RETURNVISIT_DATABASE_URL names (or, for SQLite, the site configuration's).
set -eu

dir="${1:-/var/backups/returnvisit}"
keep_days="${RETURNVISIT_BACKUP_KEEP_DAYS:-14}"
stamp="$(date +%Y%m%d-%H%M%S)"
url="${RETURNVISIT_DATABASE_URL:-}"

split_url='
import os, sys
from sqlalchemy.engine import URL, make_url
url = make_url(os.environ["RETURNVISIT_DATABASE_URL"])
if sys.argv[1] == "password":
    sys.stdout.write(url.password or "")
else:
    parts = {name: getattr(url, name) for name in ("username", "host", "port", "database", "query")}
    sys.stdout.write(URL.create("postgresql", **parts).render_as_string(hide_password=False))
'

mkdir -p "$dir"
case "$url" in
    postgresql*)
        # pg_dump takes a libpq URL without SQLAlchemy's driver name (postgresql+psycopg:// ->
        # postgresql://) and gets the password in PGPASSWORD, never on its command line: `ps` shows
        # every process's arguments to every user. The venv's SQLAlchemy splits the URL (the password
        # may be %-encoded); it reads the URL from the environment, not its own arguments, too.
        python="$(dirname "$0")/../.venv/bin/python"
        libpq_url="$("$python" -c "$split_url" url)"
        password="$("$python" -c "$split_url" password)"
        if [ -n "$password" ]; then
            PGPASSWORD="$password"
            export PGPASSWORD
        fi
        pg_dump --format=custom --file="$dir/returnvisit-$stamp.dump.partial" "$libpq_url"
        mv "$dir/returnvisit-$stamp.dump.partial" "$dir/returnvisit-$stamp.dump"
        ;;
    *)
        returnvisit backup "$dir/returnvisit-$stamp.db"
        ;;
esac
find "$dir" -maxdepth 1 -type f \( -name 'returnvisit-*.db' -o -name 'returnvisit-*.dump' \) \
    -mtime +"$keep_days" -delete
echo "backup written to $dir (backups older than $keep_days days removed)"
