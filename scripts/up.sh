#!/usr/bin/env bash
# `make up`: from a Debian/Ubuntu box to a working single-host Wrenn, as root.
#
#   scripts/up.sh        make up: set up, start, prove, then stay until Ctrl-C
#                        (DETACH=1, make up DETACH=1: return once it answers, leaving it running)
#   scripts/up.sh down   make down: stop what a make up started, foreground or detached
#
# Installs what is missing, builds, builds the `base` template if absent, starts
# Wrenn's own PostgreSQL and Redis (scripts/services.sh) and the control plane, creates
# an admin user and an API key (once; kept under WRENN_DIR), registers a local host
# agent (once), saves the CLI profile `local`, prints the URL and key, and proves the
# install works by running a command in a fresh sandbox.
# Then it stays in the foreground; Ctrl-C stops the server and agent and the databases.
# Sandboxes still running then keep running: the next `make up` re-adopts them.
# The server's and agent's pids are kept in $WRENN_DIR/up/*.pid (PostgreSQL's and
# Redis's in their data dirs, scripts/services.sh), so that `make down` finds them.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "up: run as root (VMs, network namespaces)" >&2; exit 1; }
export WRENN_DIR=${WRENN_DIR:-/var/lib/wrenn}
PORT=${WRENN_PORT:-8080}
AGENT_ADDR=${WRENN_AGENT_ADDR:-127.0.0.1:50051}
URL=http://127.0.0.1:$PORT
STATE=$WRENN_DIR/up
SERVICES=$WRENN_DIR/services
DETACH=${DETACH:-}
[[ $DETACH == 0 ]] && DETACH=

# Each step's seconds, for the timing line printed once the sandbox answered.
T0=$EPOCHREALTIME t_step= t_mark=$T0 timing=()
since() { # seconds since an EPOCHREALTIME, 2 decimals, no fork
	local us=$((${EPOCHREALTIME/[.,]/} - ${1/[.,]/}))
	printf -v "$2" '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000))
}
step() { # step NAME TEXT: ends the running step and starts NAME
	local s
	if [[ -n $t_step ]]; then
		since "$t_mark" s
		timing+=("$t_step $s")
	fi
	t_step=$1 t_mark=$EPOCHREALTIME
	printf '\n==> %s\n' "$2"
}

# --- stopping: one code path for Ctrl-C, make down and a make up replacing a detached one

# pid_of NAME WHAT: the pid in $STATE/NAME.pid while that process still runs WHAT (a
# pid reused by another program, or a zombie, has another or an empty command line).
pid_of() {
	local pid cmd
	[[ -s $STATE/$1.pid ]] || return 1
	pid=$(<"$STATE/$1.pid")
	[[ $pid =~ ^[0-9]+$ && $pid != "$$" ]] || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cmd == *"$2"* ]] || return 1
	echo "$pid"
}
running() { # running PID…: true while any of them runs (a zombie does not)
	local p
	for p; do [[ -n $(tr -d '\0' 2>/dev/null <"/proc/$p/cmdline") ]] && return 0; done
	return 1
}

# say_left: the sandboxes of the make up key that keep running, said while the API is up.
say_left() {
	local key url left
	key=$(cat "$STATE/api-key" 2>/dev/null) || return 0
	url=$(cat "$STATE/url" 2>/dev/null) || url=$URL
	left=$(curl -s -m 5 -H "X-API-Key: $key" "$url/v1/sandboxes" 2>/dev/null |
		python3 -c "import json,sys; print('\n'.join('  %s  %s' % (s['id'], s['status']) for s in json.load(sys.stdin).get('sandboxes', [])))" 2>/dev/null || true)
	[[ -z $left ]] || printf '\nsandboxes of the make up key still there (they keep running; the next make up re-adopts them):\n%s\n' "$left"
}

# stop_wrenn [services]: stops the server and agent a make up started (its pid files),
# saying first which sandboxes keep running; with "services" PostgreSQL and Redis too.
# Fails when there was nothing to stop.
stop_wrenn() {
	local server agent pids=() out stopped=1 i
	server=$(pid_of server "wrenn server") && pids+=("$server")
	agent=$(pid_of agent "wrenn agent") && pids+=("$agent")
	if ((${#pids[@]})); then
		[[ -z $server ]] || say_left
		step stop "stopping (sandboxes keep running; the next make up re-adopts them)"
		kill -TERM "${pids[@]}" 2>/dev/null || true
		for ((i = 0; i < 600; i++)); do
			running "${pids[@]}" || break
			sleep 0.1
		done
		if running "${pids[@]}"; then
			echo "up: pid ${pids[*]} still running 60 s after SIGTERM; killing it" >&2
			kill -KILL "${pids[@]}" 2>/dev/null || true
		fi
		stopped=0
	fi
	rm -f "$STATE/server.pid" "$STATE/agent.pid"
	if [[ ${1:-} == services ]]; then
		out=$(DATA_DIR=$SERVICES bash scripts/services.sh stop 2>&1) || echo "$out" >&2
		[[ $out != *stopping* ]] || stopped=0
	fi
	return "$stopped"
}

if [[ ${1:-} == down ]]; then
	[[ -d $STATE ]] || { echo "up: nothing to stop ($STATE does not exist)"; exit 0; }
	stopped=
	# A make up in the foreground (or still starting) stops itself, as on Ctrl-C; the
	# sandboxes that keep running are said here too, not only on its terminal.
	if up=$(pid_of up up.sh); then
		echo "up: stopping the make up that runs in a terminal's foreground or is still starting (pid $up; it says so on its terminal too)"
		say_left
		kill -TERM "$up"
		for ((i = 0; i < 900; i++)); do
			running "$up" || break
			sleep 0.1
		done
		running "$up" && { echo "up: make up (pid $up) did not stop within 90 s" >&2; exit 1; }
		stopped=1
	fi
	stop_wrenn services && stopped=1
	if [[ -n $stopped ]]; then
		echo "Wrenn stopped (server, agent, PostgreSQL, Redis)."
	else
		echo "up: nothing to stop (no make up is running)"
	fi
	exit 0
elif [[ -n ${1:-} ]]; then
	echo "usage: $0 [down]" >&2
	exit 2
fi

mkdir -p "$STATE" && chmod 700 "$STATE"
# One make up at a time. One that runs in the foreground belongs to its terminal: say
# where it is rather than take it over. A detached one is replaced, which is what a make
# up after a code change is for (the databases keep running; make down stops all).
if up=$(pid_of up up.sh); then
	echo "up: make up is already running (pid $up, in the foreground of another terminal or still starting); Ctrl-C it there, or run make down, first" >&2
	exit 1
fi
server=$(pid_of server "wrenn server") || server=
agent=$(pid_of agent "wrenn agent") || agent=
if [[ -n $server$agent ]]; then
	echo "up: Wrenn from an earlier make up DETACH=1 is running (server pid ${server:--}, agent pid ${agent:--}): stopping it to start this build; make down stops it for good"
	stop_wrenn
fi
echo $$ >"$STATE/up.pid"
# Whatever ends this run before it is up (a failure, Ctrl-C, make down) leaves nothing
# running, and fails. Once up, Ctrl-C (or make down's TERM) is how it is meant to end: a
# clean stop, status 0. The Makefile runs this script through scripts/foreground.py, so
# the Ctrl-C reaches only this script's process group, not make (which would print an
# error line).
cleanup() {
	stop_wrenn services || true
	rm -f "$STATE/up.pid"
}
trap cleanup EXIT
on_signal=130
trap 'exit $on_signal' INT TERM

# detach LOG CMD…: starts CMD in a session of its own, its output appended to LOG, with
# none of this script's other open files: a lock its caller holds (flock … make up) or
# make's jobserver pipe would otherwise stay open as long as the server and agent run,
# and the agent's VMs after them. The session: a Ctrl-C reaches this script only, so
# that cleanup can still ask the server what is left; and it outlives a detached make up.
detach() {
	local log=$1 fd
	shift
	(
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			((fd <= 2)) || exec {fd}>&-
		done
		exec setsid "$@"
	) </dev/null >>"$log" 2>&1 &
}

secret() { # a value generated once and kept, 0600
	local f=$STATE/$1
	[ -s "$f" ] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$f")
	cat "$f"
}

step deps "dependencies"
bash scripts/install-deps.sh
step build "build"
make -s build
step template "guest template (cached; the first build runs debootstrap, 2–3 minutes)"
bin/wrenn image build --envd bin/envd
step services "PostgreSQL and Redis"
DATA_DIR=$SERVICES bash scripts/services.sh start >/dev/null
set -a
# shellcheck disable=SC1091
. "$SERVICES/env"
set +a


step server "control plane on :$PORT"
# Something else on the port (a make up of an older checkout, without pid files) would
# answer the health check below in this server's place.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	echo "up: port $PORT (WRENN_PORT) is taken by something else; stop it or pick another:" >&2
	ss -Hltnp "sport = :$PORT" 2>/dev/null | head -3 >&2 || true
	exit 1
fi
# Sandbox ports at {port}-{id}.localhost:$PORT (curl and browsers resolve *.localhost
# to this machine); set WRENN_DOMAIN to a real wildcard domain behind TLS (deploy/Caddyfile).
WRENN_DOMAIN=${WRENN_DOMAIN:-localhost} WRENN_JWT_SECRET=$(secret jwt-secret) \
	detach "$STATE/server.log" bin/wrenn server --listen ":$PORT"
server=$!
echo "$server" >"$STATE/server.pid"
echo "$URL" >"$STATE/url"
# Up when it can reach PostgreSQL and Redis.
for _ in $(seq 1 600); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" || true)" = 200 ] && break
	sleep 0.05
done

api() { curl -sS -H 'Content-Type: application/json' "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
# field NAME: a string field of the server's JSON on stdin (ids, tokens, statuses: no
# escapes in them), without starting python for it; fails when it is not there.
field() {
	local in
	IFS= read -rd '' in || true
	[[ $in =~ \"$1\"[[:space:]]*:[[:space:]]*\"([^\"\\]*)\" ]] || return 1
	echo "${BASH_REMATCH[1]}"
}

step key "admin user and API key"
ADMIN_EMAIL=${WRENN_ADMIN_EMAIL:-admin@wrenn.local}
ADMIN_PASSWORD=$(secret admin-password)
creds="\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\""
# Log in first: the admin exists after the first run, and a sign-up that finds the email
# taken still costs a password hash and a sign-up of the address's hourly allowance.
if ! token=$(api -X POST "$URL/v1/auth/login" -d "{$creds}" 2>/dev/null | field token); then
	api -X POST "$URL/v1/auth/signup" -d "{$creds,\"name\":\"admin\"}" -o /dev/null
	token=$(api -X POST "$URL/v1/auth/login" -d "{$creds}" | field token) ||
		{ echo "up: cannot log in as $ADMIN_EMAIL (password in $STATE/admin-password)" >&2; exit 1; }
fi
bin/wrenn admin grant "$ADMIN_EMAIL" >/dev/null # platform administrator: may add platform hosts
if [ ! -s "$STATE/api-key" ]; then
	(umask 077 && api -X POST "$URL/v1/api-keys" -H "Authorization: Bearer $token" -d '{"name":"make up"}' |
		field key >"$STATE/api-key")
fi
KEY=$(cat "$STATE/api-key")
E2B_KEY=e2b_${KEY#wrn_} # the same key, in the form the e2b SDKs accept

# The CLI's profile `local` (~/.config/wrenn/config; made the current one): `bin/wrenn
# sandbox ls` then works with nothing exported, for root and, through sudo, the user.
# An older CLI without profiles refuses: a warning, make up goes on.
step profile "CLI profile local (bin/wrenn login)"
saved=()
login=(bin/wrenn login --profile local --url "$URL" --api-key "$KEY")
if out=$("${login[@]}" </dev/null 2>&1); then
	saved+=(root)
else
	echo "up: could not save the local CLI profile: ${out##*$'\n'}" >&2
fi
if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
	home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
	if out=$(runuser -u "$SUDO_USER" -- env -u XDG_CONFIG_HOME HOME="$home" "$PWD/${login[0]}" "${login[@]:1}" </dev/null 2>&1); then
		saved+=("$SUDO_USER")
	else
		echo "up: could not save the local CLI profile for $SUDO_USER: ${out##*$'\n'}" >&2
	fi
fi

# The local agent registers like any other host: a one-time token from POST /v1/hosts,
# then its own TLS identity and credentials under $WRENN_DIR/agent.
step agent "host agent on $AGENT_ADDR"
agent_args=(--listen "$AGENT_ADDR")
host_id=$(field host_id 2>/dev/null <"$WRENN_DIR/agent/host.json" || true)
if [ -z "$host_id" ] || [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$URL/v1/hosts/$host_id")" != 200 ]; then
	# Never registered, or registered with a control plane whose database is gone.
	rm -f "$WRENN_DIR/agent/host.json"
	reg=$(api -X POST "$URL/v1/hosts" -H "Authorization: Bearer $token" -d "{\"name\":\"$(hostname)\",\"platform\":true}")
	agent_args+=(--server "$URL" --token "$(field registration_token <<<"$reg")")
	host_id=$(field id <<<"$reg")
fi
detach "$STATE/agent.log" bin/wrenn agent "${agent_args[@]}"
agent=$!
echo "$agent" >"$STATE/agent.pid"
# Its port first: the host may still read online from a run that just ended (its
# record goes stale only after 90 s), before this agent listens.
host=${AGENT_ADDR%:*} port=${AGENT_ADDR##*:}
for _ in $(seq 1 600); do
	(exec 3<>"/dev/tcp/${host:-127.0.0.1}/$port") 2>/dev/null && break
	sleep 0.05
done
for _ in $(seq 1 600); do
	status=$(api -H "Authorization: Bearer $token" "$URL/v1/hosts/$host_id" | field status 2>/dev/null || true)
	[ "$status" = online ] && break
	sleep 0.1
done
[ "$status" = online ] || { echo "up: the agent did not come online; see $STATE/agent.log" >&2; exit 1; }

# The agent builds the base template's warm snapshot when it starts (a boot, once per
# template version): every create then restores it instead of booting.
step snapshot "warm snapshot of the base template (built once; creates restore it)"
for _ in $(seq 1 900); do
	compgen -G "$WRENN_DIR/images/base/warm/*-1c-512m/snapshot/snapshot.json" >/dev/null && break
	sleep 0.2
done
compgen -G "$WRENN_DIR/images/base/warm/*-1c-512m/snapshot/snapshot.json" >/dev/null ||
	echo "up: no warm snapshot yet (see $STATE/agent.log): sandboxes boot cold until it is built" >&2

step sandbox "proving it works: a command in a fresh sandbox"
start=$(date +%s%N)
sb=$(api -X POST "$URL/v1/sandboxes" -H "X-API-Key: $KEY" -d '{"template":"base"}')
id=$(field id <<<"$sb") || { echo "up: create failed: $sb" >&2; exit 1; }
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
on_signal=0 # up: from here on Ctrl-C is the way to stop it (already while the summary prints)
step done "Wrenn is up"
since "$T0" total
echo "timing (s): ${timing[*]} total $total"

try="curl -H \"X-API-Key: $KEY\" -H 'Content-Type: application/json' -d '{}' $URL/v1/sandboxes"
if ((${#saved[@]})); then
	try="bin/wrenn sandbox ls      (CLI profile local saved for ${saved[*]})
      $try"
fi
if [[ -n $DETACH ]]; then
	stop_how="It keeps running in the background (server pid $server, agent pid $agent); make down stops it."
else
	stop_how="Ctrl-C stops Wrenn."
fi
# The dashboard is embedded when make build could build it (Node.js 20.19+).
dashboard="$URL/  (sign in as the admin below)"
[[ -s web/build/index.html ]] || dashboard="not built (make build needs Node.js 20.19+); the API works without it"
cat <<EOF2
  URL:       $URL
  dashboard: $dashboard
  API key:   $KEY          (X-API-Key header; kept in $STATE/api-key)
  admin:     $ADMIN_EMAIL / password in $STATE/admin-password
  logs:      $STATE/server.log, $STATE/agent.log

Try:  $try

The e2b SDKs (JS and Python) drive it unchanged with:
  export E2B_API_KEY=$E2B_KEY E2B_API_URL=$URL E2B_SANDBOX_URL=$URL

$stop_how
EOF2
if [[ -n $DETACH ]]; then
	trap - EXIT INT TERM
	rm -f "$STATE/up.pid"
	exit 0
fi
wait -n "$server" "$agent"
echo "up: a Wrenn process exited; see the logs above" >&2
exit 1
