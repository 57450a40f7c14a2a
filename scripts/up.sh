#!/usr/bin/env bash
# `make up`: from a Debian/Ubuntu box to a working single-host Wrenn, as root.
#
# Installs what is missing, builds, builds the `base` template if absent, starts
# Wrenn's own PostgreSQL and Redis (scripts/services.sh), a host agent and the control
# plane, creates an admin user and an API key (once; kept under WRENN_DIR), prints the
# URL and key, and proves the install works by running a command in a fresh sandbox.
# Then it stays in the foreground; Ctrl-C stops the server and agent and the databases.
# Sandboxes still running then keep running: the next `make up` re-adopts them.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "up: run as root (VMs, network namespaces)" >&2; exit 1; }
export WRENN_DIR=${WRENN_DIR:-/var/lib/wrenn}
PORT=${WRENN_PORT:-8080}
AGENT_ADDR=${WRENN_AGENT_ADDR:-127.0.0.1:50051}
STATE=$WRENN_DIR/up
mkdir -p "$STATE" && chmod 700 "$STATE"

step() { printf '\n==> %s\n' "$*"; }
secret() { # a value generated once and kept, 0600
	local f=$STATE/$1
	[ -s "$f" ] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$f")
	cat "$f"
}

step "dependencies"
bash scripts/install-deps.sh
step "build"
make -s build
step "guest template (cached; the first build runs debootstrap, 2–3 minutes)"
bin/wrenn image build --envd bin/envd
step "PostgreSQL and Redis"
DATA_DIR=$WRENN_DIR/services bash scripts/services.sh start >/dev/null
set -a
# shellcheck disable=SC1091
. "$WRENN_DIR/services/env"
set +a

pids=()
cleanup() {
	step "stopping (sandboxes keep running; the next make up re-adopts them)"
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	DATA_DIR=$WRENN_DIR/services bash scripts/services.sh stop >/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export WRENN_AGENT_SECRET
WRENN_AGENT_SECRET=$(secret agent-secret)
step "host agent on $AGENT_ADDR"
bin/wrenn agent --listen "$AGENT_ADDR" >>"$STATE/agent.log" 2>&1 &
pids+=($!)
step "control plane on :$PORT"
WRENN_JWT_SECRET=$(secret jwt-secret) WRENN_AGENT_ADDR=$AGENT_ADDR \
	bin/wrenn server --listen ":$PORT" >>"$STATE/server.log" 2>&1 &
pids+=($!)
URL=http://127.0.0.1:$PORT
# Up when it can reach PostgreSQL and Redis.
for _ in $(seq 1 150); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" || true)" = 200 ] && break
	sleep 0.2
done

api() { curl -sS -H 'Content-Type: application/json' "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

step "admin user and API key"
ADMIN_EMAIL=${WRENN_ADMIN_EMAIL:-admin@wrenn.local}
ADMIN_PASSWORD=$(secret admin-password)
creds="\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\""
token=$(api -X POST "$URL/v1/auth/login" -d "{$creds}" | json "['token']" 2>/dev/null ||
	api -X POST "$URL/v1/auth/signup" -d "{$creds,\"name\":\"admin\"}" | json "['token']")
if [ ! -s "$STATE/api-key" ]; then
	(umask 077 && api -X POST "$URL/v1/api-keys" -H "Authorization: Bearer $token" -d '{"name":"make up"}' |
		json "['key']" >"$STATE/api-key")
fi
KEY=$(cat "$STATE/api-key")

step "proving it works: a command in a fresh sandbox"
sb=$(api -X POST "$URL/v1/sandboxes" -H "X-API-Key: $KEY" -d '{"template":"base"}')
id=$(echo "$sb" | json "['id']") || { echo "up: create failed: $sb" >&2; exit 1; }
api -X POST "$URL/v1/sandboxes/$id/exec" -H "X-API-Key: $KEY" \
	-d '{"cmd":"/bin/bash","args":["-c","echo Hello from $(hostname), kernel $(uname -r)"]}' | json "['stdout']"
api -X DELETE "$URL/v1/sandboxes/$id" -H "X-API-Key: $KEY" -o /dev/null

cat <<EOF2

Wrenn is up.
  URL:      $URL
  API key:  $KEY          (X-API-Key header; kept in $STATE/api-key)
  admin:    $ADMIN_EMAIL / password in $STATE/admin-password
  logs:     $STATE/server.log, $STATE/agent.log

Try:  curl -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{}' $URL/v1/sandboxes
Ctrl-C stops Wrenn.
EOF2
wait -n "${pids[@]}"
echo "up: a Wrenn process exited; see the logs above" >&2
exit 1
