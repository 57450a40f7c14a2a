#!/usr/bin/env bash
# Runs Wrenn's own PostgreSQL and Redis from the system binaries, in a data dir of their
# own: own ports (127.0.0.1 only), own socket dirs, each as an unprivileged user. Never
# the distro's services on 5432/6379, never Docker.
#
#   scripts/services.sh start|stop|status
#
# Environment:
#   DATA_DIR          where everything lives (default /var/lib/wrenn/services)
#   WRENN_PG_PORT     PostgreSQL's TCP port on 127.0.0.1 (default 15432)
#   WRENN_REDIS_PORT  Redis's TCP port on 127.0.0.1 (default 16379)
#   WRENN_SERVICES_TIMEOUT  seconds to wait for each service to answer (default 60)
#
# Layout of DATA_DIR:
#   pg/data pg/run pg/log   cluster, socket dir, log (owned by postgres, 0700)
#   redis/                  redis.conf, append-only files, socket, pid, log (owned by redis)
#   pg-password redis-password env   generated once, 0600; env holds the URLs to use
set -euo pipefail

DATA_DIR=${DATA_DIR:-/var/lib/wrenn/services}
PG_PORT=${WRENN_PG_PORT:-15432}
REDIS_PORT=${WRENN_REDIS_PORT:-16379}
TIMEOUT=${WRENN_SERVICES_TIMEOUT:-60}

PG_USER=postgres
PG_DIR=$DATA_DIR/pg
PGDATA=$PG_DIR/data
PG_RUN=$PG_DIR/run
REDIS_DIR=$DATA_DIR/redis
REDIS_SOCK=$REDIS_DIR/redis.sock
REDIS_PID=$REDIS_DIR/redis.pid

say() { echo "services: $*"; }
die() {
	echo "services: $*" >&2
	exit 1
}

# --- helpers ---------------------------------------------------------------------------

# pg_bin: the bin dir of the cluster's major version, or the newest installed.
pg_bin() {
	local v
	if [[ -s $PGDATA/PG_VERSION ]]; then
		v=$(<"$PGDATA/PG_VERSION")
		[[ -x /usr/lib/postgresql/$v/bin/postgres ]] ||
			die "the cluster in $PGDATA is PostgreSQL $v, whose binaries are not installed"
		echo "/usr/lib/postgresql/$v/bin"
		return
	fi
	v=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -1)
	[[ -n $v && -x /usr/lib/postgresql/$v/bin/initdb ]] ||
		die "PostgreSQL server binaries not found (scripts/install-deps.sh)"
	echo "/usr/lib/postgresql/$v/bin"
}

as_pg() { runuser -u "$PG_USER" -- "$@"; }

# redis_user: who runs redis-server (the package's redis user, else root).
redis_user() { if id -u redis >/dev/null 2>&1; then echo redis; else echo root; fi; }

# secret FILE: print the password in FILE, generating it (hex, URL-safe) the first time.
secret() {
	local f=$1
	if [[ ! -s $f ]]; then
		(
			umask 077
			od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$f.tmp"
			mv "$f.tmp" "$f"
		)
	fi
	chmod 600 "$f"
	cat "$f"
}

# port_busy PORT: true if something listens on 127.0.0.1:PORT (or on all addresses).
port_busy() {
	local port=$1
	if command -v ss >/dev/null; then
		[[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
	fi
}

# who_listens PORT: a description of the listener, for error messages.
who_listens() {
	command -v ss >/dev/null && ss -Hltnp "sport = :$1" 2>/dev/null | head -3
}

pg_running() { [[ -s $PGDATA/PG_VERSION ]] && as_pg "$(pg_bin)/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1; }

redis_pid() {
	local pid
	[[ -s $REDIS_PID ]] || return 1
	pid=$(<"$REDIS_PID")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
	echo "$pid"
}
redis_running() { redis_pid >/dev/null; }

redis_ping() {
	REDISCLI_AUTH=$(<"$DATA_DIR/redis-password") redis-cli --no-auth-warning -h 127.0.0.1 -p "$1" ping 2>/dev/null
}

# port_of_running_pg / redis: the port the running server actually uses.
pg_port_running() { sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null; }
redis_port_running() { sed -n 's/^port //p' "$REDIS_DIR/redis.conf" 2>/dev/null; }

# --- PostgreSQL ------------------------------------------------------------------------

pg_init() {
	local bin=$1
	install -d -m 700 -o "$PG_USER" -g "$PG_USER" "$PG_DIR" "$PG_RUN"
	as_pg test -w "$PG_DIR" ||
		die "the $PG_USER user cannot reach $PG_DIR: a parent of DATA_DIR is closed to it"
	[[ -s $PGDATA/PG_VERSION ]] && return
	say "initialising PostgreSQL cluster in $PGDATA"
	# trust here only for the first connection; pg_hba.conf is rewritten right below.
	as_pg "$bin/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --no-instructions >"$PG_DIR/initdb.log" 2>&1 ||
		die "initdb failed, see $PG_DIR/initdb.log"
	# Local socket (dir 0700, postgres only): trust. TCP: passwords, SCRAM only.
	cat >"$PGDATA/pg_hba.conf" <<-EOF
		# Written by scripts/services.sh.
		local all all trust
		host  all all 127.0.0.1/32 scram-sha-256
	EOF
	chown "$PG_USER:" "$PGDATA/pg_hba.conf"
	chmod 600 "$PGDATA/pg_hba.conf"
}

pg_start() {
	local bin pw
	bin=$(pg_bin)
	pw=$(secret "$DATA_DIR/pg-password")
	if ((PG_WAS_RUNNING)); then
		say "PostgreSQL already running (port $(pg_port_running), data $PGDATA)"
		PG_PORT=$(pg_port_running)
	else
		pg_init "$bin"
		say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
		as_pg "$bin/pg_ctl" start -D "$PGDATA" -w -t "$TIMEOUT" -l "$PG_DIR/log" \
			-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_RUN -c password_encryption=scram-sha-256" >/dev/null ||
			die "PostgreSQL did not start; last log lines:
$(tail -20 "$PG_DIR/log" 2>/dev/null)"
	fi
	local i ready=
	for ((i = 0; i < TIMEOUT * 5; i++)); do
		"$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && ready=1 && break
		sleep 0.2
	done
	[[ -n $ready ]] || die "PostgreSQL does not answer on 127.0.0.1:$PG_PORT after ${TIMEOUT}s"
	# Role and database, once; the role's password follows pg-password.
	as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres -v pw="$pw" >/dev/null <<-'EOF' ||
		SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wrenn') AS need_role \gset
		\if :need_role
		CREATE ROLE wrenn LOGIN;
		\endif
		ALTER ROLE wrenn PASSWORD :'pw';
		SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'wrenn') AS need_db \gset
		\if :need_db
		CREATE DATABASE wrenn OWNER wrenn;
		\endif
	EOF
		die "could not create the wrenn role and database"
}

pg_stop() {
	if ! pg_running; then
		say "PostgreSQL not running"
		return
	fi
	say "stopping PostgreSQL"
	as_pg "$(pg_bin)/pg_ctl" stop -D "$PGDATA" -m fast -w -t "$TIMEOUT" >/dev/null ||
		die "PostgreSQL did not stop within ${TIMEOUT}s"
}

# --- Redis -----------------------------------------------------------------------------

redis_start() {
	local pw user
	command -v redis-server >/dev/null || die "redis-server not found (scripts/install-deps.sh)"
	pw=$(secret "$DATA_DIR/redis-password")
	user=$(redis_user)
	if ((REDIS_WAS_RUNNING)); then
		say "Redis already running (port $(redis_port_running), pid $(redis_pid))"
		REDIS_PORT=$(redis_port_running)
	else
		install -d -m 700 -o "$user" -g "$user" "$REDIS_DIR"
		runuser -u "$user" -- test -w "$REDIS_DIR" ||
			die "the $user user cannot reach $REDIS_DIR: a parent of DATA_DIR is closed to it"
		(
			umask 077
			cat >"$REDIS_DIR/redis.conf" <<-EOF
				# Written by scripts/services.sh on every start.
				bind 127.0.0.1
				protected-mode yes
				port $REDIS_PORT
				unixsocket $REDIS_SOCK
				unixsocketperm 700
				dir $REDIS_DIR
				appendonly yes
				appendfsync everysec
				daemonize yes
				pidfile $REDIS_PID
				logfile $REDIS_DIR/log
				requirepass $pw
			EOF
		)
		chown "$user:" "$REDIS_DIR/redis.conf"
		say "starting Redis on 127.0.0.1:$REDIS_PORT"
		rm -f "$REDIS_PID"
		runuser -u "$user" -- redis-server "$REDIS_DIR/redis.conf" ||
			die "redis-server did not start; see $REDIS_DIR/log"
	fi
}

# redis_wait: until Redis answers. Apart from redis_start, so that Redis gets ready
# while PostgreSQL starts.
redis_wait() {
	local i
	for ((i = 0; i < TIMEOUT * 20; i++)); do
		[[ $(redis_ping "$REDIS_PORT") == PONG ]] && return
		sleep 0.05
	done
	die "Redis does not answer on 127.0.0.1:$REDIS_PORT after ${TIMEOUT}s; last log lines:
$(tail -20 "$REDIS_DIR/log" 2>/dev/null)"
}

redis_stop() {
	local pid i
	if ! pid=$(redis_pid); then
		say "Redis not running"
		return
	fi
	say "stopping Redis"
	# SIGTERM is Redis's clean shutdown: it fsyncs the append-only file first.
	kill -TERM "$pid"
	for ((i = 0; i < TIMEOUT * 5; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	die "Redis (pid $pid) did not stop within ${TIMEOUT}s"
}

# --- commands --------------------------------------------------------------------------

write_env() {
	local pgpw redispw
	pgpw=$(<"$DATA_DIR/pg-password")
	redispw=$(<"$DATA_DIR/redis-password")
	(
		umask 077
		cat >"$DATA_DIR/env.tmp" <<-EOF
			WRENN_DATABASE_URL=postgres://wrenn:$pgpw@127.0.0.1:$PG_PORT/wrenn?sslmode=disable
			WRENN_REDIS_URL=redis://:$redispw@127.0.0.1:$REDIS_PORT/0
		EOF
		mv "$DATA_DIR/env.tmp" "$DATA_DIR/env"
	)
	chmod 600 "$DATA_DIR/env"
}

cmd_start() {
	# Both ports checked before either server starts, so a refusal leaves nothing behind
	# (pg_start and redis_start rely on it, and on these answers: each check is a process).
	PG_WAS_RUNNING=0 REDIS_WAS_RUNNING=0
	pg_running && PG_WAS_RUNNING=1
	redis_running && REDIS_WAS_RUNNING=1
	if ((!PG_WAS_RUNNING)) && port_busy "$PG_PORT"; then
		die "port $PG_PORT (WRENN_PG_PORT) is taken by something else; pick another:
$(who_listens "$PG_PORT")"
	fi
	if ((!REDIS_WAS_RUNNING)) && port_busy "$REDIS_PORT"; then
		die "port $REDIS_PORT (WRENN_REDIS_PORT) is taken by something else; pick another:
$(who_listens "$REDIS_PORT")"
	fi
	install -d -m 711 "$DATA_DIR"
	redis_start
	pg_start
	redis_wait
	write_env
	say "ready; the URLs to use (also in $DATA_DIR/env):"
	cat "$DATA_DIR/env"
}

cmd_stop() {
	redis_stop
	pg_stop
}

cmd_status() {
	local rc=0 pid
	if pg_running; then
		if "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$(pg_port_running)"; then
			say "PostgreSQL: running on 127.0.0.1:$(pg_port_running), accepting connections (data $PGDATA)"
		else
			say "PostgreSQL: running on 127.0.0.1:$(pg_port_running), NOT accepting connections"
			rc=3
		fi
	else
		say "PostgreSQL: stopped"
		rc=3
	fi
	if pid=$(redis_pid); then
		if [[ $(redis_ping "$(redis_port_running)") == PONG ]]; then
			say "Redis: running on 127.0.0.1:$(redis_port_running), pid $pid, answering"
		else
			say "Redis: running (pid $pid) but not answering on 127.0.0.1:$(redis_port_running)"
			rc=3
		fi
	else
		say "Redis: stopped"
		rc=3
	fi
	return "$rc"
}

case ${1:-} in
start | stop | status) ;;
*)
	echo "usage: $0 start|stop|status   (DATA_DIR, WRENN_PG_PORT, WRENN_REDIS_PORT)" >&2
	exit 2
	;;
esac
[[ $(id -u) == 0 ]] || die "must run as root: it runs PostgreSQL and Redis as their own users via runuser"
for p in "$PG_PORT" "$REDIS_PORT" "$TIMEOUT"; do
	[[ $p =~ ^[0-9]+$ ]] || die "not a number: $p"
done
[[ $DATA_DIR == /* ]] || die "DATA_DIR must be an absolute path, got $DATA_DIR"

"cmd_$1"
