#!/usr/bin/env bash
# `make up`: from a Debian/Ubuntu box to a working single-host Wrenn, as root.
#
# Installs what is missing, builds, builds the `base` template if absent, starts
# Wrenn's own PostgreSQL and Redis (scripts/services.sh) and the control plane, creates
# an admin user and an API key (once; kept under WRENN_DIR), registers a local host
# agent (once), prints the URL and key, and proves the install works by running a
# command in a fresh sandbox.
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
URL= KEY=
cleanup() {
	# What keeps running after Wrenn stops, said before it stops (the API is still up).
	if [ -n "$KEY" ]; then
		left=$(curl -s -H "X-API-Key: $KEY" "$URL/v1/sandboxes" 2>/dev/null |
			python3 -c "import json,sys; print('\n'.join('  %s  %s' % (s['id'], s['status']) for s in json.load(sys.stdin).get('sandboxes', [])))" 2>/dev/null || true)
		[ -n "$left" ] && printf '\nsandboxes of the make up key still there (they keep running; the next make up re-adopts them):\n%s\n' "$left"
	fi
	step "stopping (sandboxes keep running; the next make up re-adopts them)"
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	DATA_DIR=$WRENN_DIR/services bash scripts/services.sh stop >/dev/null || true
}
trap cleanup EXIT
# Ctrl-C (or a TERM) is how `make up` is meant to end: a clean stop, status 0. The
# Makefile runs this script through scripts/foreground.py, so the Ctrl-C reaches
# only this script's process group, not make (which would print an error line).
trap 'exit 0' INT TERM

step "control plane on :$PORT"
# Sandbox ports at {port}-{id}.localhost:$PORT (curl and browsers resolve *.localhost
# to this machine); set WRENN_DOMAIN to a real wildcard domain behind TLS (deploy/Caddyfile).
# setsid: a Ctrl-C reaches this script only, so that cleanup can still ask the server
# what is left before stopping it.
WRENN_DOMAIN=${WRENN_DOMAIN:-localhost} WRENN_JWT_SECRET=$(secret jwt-secret) \
	setsid bin/wrenn server --listen ":$PORT" >>"$STATE/server.log" 2>&1 &
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
api -X POST "$URL/v1/auth/signup" -d "{$creds,\"name\":\"admin\"}" -o /dev/null
bin/wrenn admin grant "$ADMIN_EMAIL" >/dev/null # platform administrator: may add platform hosts
token=$(api -X POST "$URL/v1/auth/login" -d "{$creds}" | json "['token']")
if [ ! -s "$STATE/api-key" ]; then
	(umask 077 && api -X POST "$URL/v1/api-keys" -H "Authorization: Bearer $token" -d '{"name":"make up"}' |
		json "['key']" >"$STATE/api-key")
fi

# The local agent registers like any other host: a one-time token from POST /v1/hosts,
# then its own TLS identity and credentials under $WRENN_DIR/agent.
step "host agent on $AGENT_ADDR"
agent_args=(--listen "$AGENT_ADDR")
host_id=$(python3 -c "import json; print(json.load(open('$WRENN_DIR/agent/host.json'))['host_id'])" 2>/dev/null || true)
if [ -z "$host_id" ] || [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$URL/v1/hosts/$host_id")" != 200 ]; then
	# Never registered, or registered with a control plane whose database is gone.
	rm -f "$WRENN_DIR/agent/host.json"
	reg=$(api -X POST "$URL/v1/hosts" -H "Authorization: Bearer $token" -d "{\"name\":\"$(hostname)\",\"platform\":true}")
	agent_args+=(--server "$URL" --token "$(echo "$reg" | json "['registration_token']")")
	host_id=$(echo "$reg" | json "['id']")
fi
setsid bin/wrenn agent "${agent_args[@]}" >>"$STATE/agent.log" 2>&1 &
pids+=($!)
# Its port first: the host may still read online from a run that just ended (its
# record goes stale only after 90 s), before this agent listens.
host=${AGENT_ADDR%:*} port=${AGENT_ADDR##*:}
for _ in $(seq 1 300); do
	(exec 3<>"/dev/tcp/${host:-127.0.0.1}/$port") 2>/dev/null && break
	sleep 0.1
done
for _ in $(seq 1 300); do
	status=$(api -H "Authorization: Bearer $token" "$URL/v1/hosts/$host_id" | json "['status']" 2>/dev/null || true)
	[ "$status" = online ] && break
	sleep 0.2
done
[ "$status" = online ] || { echo "up: the agent did not come online; see $STATE/agent.log" >&2; exit 1; }
KEY=$(cat "$STATE/api-key")
E2B_KEY=e2b_${KEY#wrn_} # the same key, in the form the e2b SDKs accept

# The agent builds the base template's warm snapshot when it starts (a boot, once per
# template version): every create then restores it instead of booting.
step "warm snapshot of the base template (built once; creates restore it)"
for _ in $(seq 1 900); do
	compgen -G "$WRENN_DIR/images/base/warm/*-1c-512m/snapshot/snapshot.json" >/dev/null && break
	sleep 0.2
done
compgen -G "$WRENN_DIR/images/base/warm/*-1c-512m/snapshot/snapshot.json" >/dev/null ||
	echo "up: no warm snapshot yet (see $STATE/agent.log): sandboxes boot cold until it is built" >&2

step "proving it works: a command in a fresh sandbox"
start=$(date +%s%N)
sb=$(api -X POST "$URL/v1/sandboxes" -H "X-API-Key: $KEY" -d '{"template":"base"}')
id=$(echo "$sb" | json "['id']") || { echo "up: create failed: $sb" >&2; exit 1; }
took=$(( ($(date +%s%N) - start) / 1000000 ))
if grep -q "msg=\"sandbox created\" sandbox=$id .*restored=true" "$STATE/agent.log"; then
	echo "created $id in ${took} ms, restored from the warm snapshot"
else
	echo "created $id in ${took} ms, booted cold (no warm snapshot)"
fi
api -X POST "$URL/v1/sandboxes/$id/exec" -H "X-API-Key: $KEY" \
	-d '{"cmd":"/bin/bash","args":["-c","echo Hello from $(hostname), kernel $(uname -r)"]}' | json "['stdout']"
api -X DELETE "$URL/v1/sandboxes/$id" -H "X-API-Key: $KEY" -o /dev/null
echo "sandbox answered"

cat <<EOF2

Wrenn is up.
  URL:      $URL
  API key:  $KEY          (X-API-Key header; kept in $STATE/api-key)
  admin:    $ADMIN_EMAIL / password in $STATE/admin-password
  logs:     $STATE/server.log, $STATE/agent.log

Try:  curl -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{}' $URL/v1/sandboxes

The e2b SDKs (JS and Python) drive it unchanged with:
  export E2B_API_KEY=$E2B_KEY E2B_API_URL=$URL E2B_SANDBOX_URL=$URL

Ctrl-C stops Wrenn.
EOF2
wait -n "${pids[@]}"
echo "up: a Wrenn process exited; see the logs above" >&2
exit 1
