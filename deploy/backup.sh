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

mkdir -p "$dir"
case "$url" in
    postgresql*)
        # pg_dump takes a libpq URL: drop SQLAlchemy's driver name (postgresql+psycopg:// -> postgresql://).
        libpq_url="$(printf '%s' "$url" | sed 's|^postgresql+[A-Za-z0-9_]*://|postgresql://|')"
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
