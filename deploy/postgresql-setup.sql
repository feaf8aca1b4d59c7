-- Create the returnvisit role and database (run once, as the postgres superuser):
--   sudo -u postgres psql -v password=THE-PASSWORD -f deploy/postgresql-setup.sql
-- Optional: -v role=NAME -v dbname=NAME (both default to returnvisit).
-- The role owns its database and nothing else: `returnvisit init` creates the tables as that role.
\set ON_ERROR_STOP on
\if :{?role}
\else
    \set role returnvisit
\endif
\if :{?dbname}
\else
    \set dbname returnvisit
\endif
\if :{?password}
\else
    DO $$ BEGIN RAISE EXCEPTION 'give the role a password: psql -v password=... -f postgresql-setup.sql'; END $$;
\endif

CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"dbname" OWNER :"role" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"dbname" TO :"role";
