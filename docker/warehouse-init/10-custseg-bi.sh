#!/bin/bash
# The BI tool's login to the warehouse. The postgres image runs this once, when the warehouse volume is new
# (/docker-entrypoint-initdb.d); run it again with the same variables to change the password.
# The pipeline grants the role `usage` on `analytics` and `select` on every published table at each publish
# (docs/configuration.md "The BI role"), and keeps an existing role as it is.
# The password comes from .env (CUSTSEG_BI_PASSWORD) and psql quotes it (:'bi_password'): no SQL is built from it.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v bi_password="$CUSTSEG_BI_PASSWORD" <<'SQL'
select not exists (select from pg_roles where rolname = 'custseg_bi') as bi_role_missing \gset
\if :bi_role_missing
create role custseg_bi login password :'bi_password';
\else
alter role custseg_bi login password :'bi_password';
\endif
SQL
