#!/usr/bin/env bash
# MLflow tracking server for a cluster: PostgreSQL backend (system packages), basic-auth, artifacts
# served over HTTP (workers never touch the store directly), no default admin password.
#
#   scripts/mlflow_server.sh start STATE_DIR [PORT]   # start PostgreSQL + MLflow, wait until up
#   scripts/mlflow_server.sh stop STATE_DIR           # stop both
#   source STATE_DIR/client.env                       # MLFLOW_TRACKING_URI/_USERNAME/_PASSWORD
#
# First start: generates the PostgreSQL superuser's and the mlflow role's passwords, the MLflow
# admin password and the Flask secret key into STATE_DIR/secrets.env (mode 600), initialises a
# PostgreSQL cluster and two databases (mlflow: runs and registry; mlflow_auth: users and
# permissions) owned by the role `mlflow`, which is no superuser and can make no roles or
# databases. The server connects as that role, its password read by libpq from STATE_DIR/pgpass
# (PGPASSFILE, mode 600): no password is on a command line (`ps` shows them to every local user)
# or in basic_auth.ini. The superuser is used only here, through PGPASSWORD, to set that up.
# The admin user is created with the generated password (MLflow 3.17 ships none); unknown users
# get NO_PERMISSIONS.
# Environment: MLFLOW_HOST (bind address, default 127.0.0.1: put a TLS proxy or tunnel in front
# for other machines), MLFLOW_ARTIFACTS_DESTINATION (default STATE_DIR/artifacts; s3://... on a
# cluster), MLFLOW_PG_DIR (PostgreSQL's files; default a new /tmp/dampeml-pg.* directory),
# MLFLOW_BIN (default: the mlflow next to this venv or on PATH).
set -euo pipefail

cmd=${1:-}; state=${2:-}
if [[ -z "$cmd" || -z "$state" ]]; then sed -n '2,21p' "$0"; exit 2; fi
mkdir -p "$state"; state=$(cd "$state" && pwd)
port=${3:-5000}
here=$(cd "$(dirname "$0")/.." && pwd)
mlflow_bin=${MLFLOW_BIN:-$( [[ -x "$here/.venv/bin/mlflow" ]] && echo "$here/.venv/bin/mlflow" || command -v mlflow )}

pg_bin() {  # PostgreSQL's server binaries: on PATH, else Debian's versioned directory
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
  local d; d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -n "$d" ]] || { echo "PostgreSQL not found: apt-get install -y postgresql" >&2; exit 1; }
  echo "$d"
}
PG=$(pg_bin)
as_pg() {  # PostgreSQL refuses to run as root: use the postgres system user then
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# PostgreSQL's files live where the postgres user can reach them (not under a private /tmp/pytest-*).
pgdir_file="$state/pgdir"
if [[ -f "$pgdir_file" ]]; then pgdir=$(cat "$pgdir_file"); fi

stop() {
  if [[ -f "$state/mlflow.pid" ]]; then
    pid=$(cat "$state/mlflow.pid")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$state/mlflow.pid"
  fi
  if [[ -n "${pgdir:-}" && -f "$pgdir/data/postmaster.pid" ]]; then
    as_pg "$PG/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null || true
  fi
}

if [[ "$cmd" == stop ]]; then stop; exit 0; fi
[[ "$cmd" == start ]] || { echo "usage: $0 start|stop STATE_DIR [PORT]" >&2; exit 2; }

umask 077
if [[ ! -f "$state/secrets.env" ]]; then
  gen() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
  {
    echo "PG_PASSWORD=$(gen)"
    echo "MLFLOW_AUTH_ADMIN_PASSWORD=$(gen)"
    echo "MLFLOW_FLASK_SERVER_SECRET_KEY=$(gen)"
    echo "PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  } > "$state/secrets.env"
fi
if ! grep -q '^MLFLOW_DB_PASSWORD=' "$state/secrets.env"; then  # a state made before the mlflow role
  echo "MLFLOW_DB_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')" >> "$state/secrets.env"
fi
# shellcheck disable=SC1091
source "$state/secrets.env"

if [[ -z "${pgdir:-}" && -n "${MLFLOW_PG_DIR:-}" ]]; then  # a persistent place (a cluster's head)
  pgdir=$MLFLOW_PG_DIR; mkdir -p "$pgdir"; echo "$pgdir" > "$pgdir_file"
  if [[ $(id -u) == 0 ]]; then chown postgres: "$pgdir"; fi
fi
if [[ -z "${pgdir:-}" ]]; then
  pgdir=$(mktemp -d /tmp/dampeml-pg.XXXXXX)
  echo "$pgdir" > "$pgdir_file"
  if [[ $(id -u) == 0 ]]; then chown postgres: "$pgdir"; fi
fi
if [[ ! -f "$pgdir/data/PG_VERSION" ]]; then
  pwfile=$(mktemp "$pgdir/pw.XXXXXX"); echo "$PG_PASSWORD" > "$pwfile"
  if [[ $(id -u) == 0 ]]; then chown postgres: "$pwfile"; fi
  as_pg "$PG/initdb" -D "$pgdir/data" -U postgres --auth=scram-sha-256 --pwfile="$pwfile" >"$state/initdb.log"
  rm -f "$pwfile"
fi
if [[ ! -f "$pgdir/data/postmaster.pid" ]]; then
  as_pg "$PG/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $pgdir" start >/dev/null
fi
# The superuser's password travels in the environment (private to this user), never in argv; the
# role's password in SQL on psql's stdin, never in argv.
export PGPASSWORD=$PG_PASSWORD
psql=(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
role_sql=$(printf "%s PASSWORD '%s'" \
  "$( [[ -n $("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='mlflow'") ]] && echo "ALTER ROLE mlflow" \
      || echo "CREATE ROLE mlflow LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION" )" \
  "$MLFLOW_DB_PASSWORD")
"${psql[@]}" >/dev/null <<<"$role_sql;"
for db in mlflow mlflow_auth; do
  if [[ -z $("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$db'") ]]; then
    "${psql[@]}" -c "CREATE DATABASE $db OWNER mlflow" >/dev/null
  fi
  # a database made before the role (postgres-owned, with tables): hand it and its objects over
  "${psql[@]}" -c "ALTER DATABASE $db OWNER TO mlflow" >/dev/null
  "${psql[@]}" -d "$db" >/dev/null <<'SQL'
ALTER SCHEMA public OWNER TO mlflow;
DO $$DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relowner <> 'mlflow'::regrole LOOP
    EXECUTE format('ALTER %s %s OWNER TO mlflow',
                   CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.name);
  END LOOP;
  -- sequences of a table's column followed their table; the rest
  FOR r IN SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind = 'S' AND c.relowner <> 'mlflow'::regrole LOOP
    EXECUTE format('ALTER SEQUENCE %s OWNER TO mlflow', r.name);
  END LOOP;
  FOR r IN SELECT t.oid::regtype AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd') AND t.typowner <> 'mlflow'::regrole LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO mlflow', r.name);
  END LOOP;
END$$;
SQL
done
unset PGPASSWORD
# libpq reads the role's password from here (the URIs below carry none)
printf '127.0.0.1:%s:*:mlflow:%s\n' "$PG_PORT" "$MLFLOW_DB_PASSWORD" > "$state/pgpass"
chmod 600 "$state/pgpass"
pg_uri="postgresql+psycopg2://mlflow@127.0.0.1:$PG_PORT"

cat > "$state/basic_auth.ini" <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = $pg_uri/mlflow_auth
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI

host=${MLFLOW_HOST:-127.0.0.1}
artifacts=${MLFLOW_ARTIFACTS_DESTINATION:-$state/artifacts}
if [[ -f "$state/mlflow.pid" ]] && kill -0 "$(cat "$state/mlflow.pid")" 2>/dev/null; then
  echo "mlflow server already running (pid $(cat "$state/mlflow.pid"))"
else
  PGPASSFILE="$state/pgpass" \
  MLFLOW_AUTH_CONFIG_PATH="$state/basic_auth.ini" \
  MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD" \
  MLFLOW_FLASK_SERVER_SECRET_KEY="$MLFLOW_FLASK_SERVER_SECRET_KEY" \
  setsid "$mlflow_bin" server --app-name basic-auth \
    --backend-store-uri "$pg_uri/mlflow" --artifacts-destination "$artifacts" \
    --host "$host" --port "$port" --workers 1 >"$state/mlflow.log" 2>&1 &
  echo $! > "$state/mlflow.pid"
fi

cat > "$state/client.env" <<ENV
export MLFLOW_TRACKING_URI=http://$host:$port
export MLFLOW_TRACKING_USERNAME=admin
export MLFLOW_TRACKING_PASSWORD=$MLFLOW_AUTH_ADMIN_PASSWORD
ENV

for _ in $(seq 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$host:$port/health" || true)
  [[ "$code" == 200 ]] && { echo "mlflow server up at http://$host:$port (client env: $state/client.env)"; exit 0; }
  kill -0 "$(cat "$state/mlflow.pid")" 2>/dev/null || { tail -30 "$state/mlflow.log" >&2; exit 1; }
  sleep 0.5
done
echo "mlflow server did not come up; see $state/mlflow.log" >&2; stop; exit 1
