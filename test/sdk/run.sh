#!/usr/bin/env bash
# Conformance check: drive envd with the official e2b JS SDK (debug mode).
#
#   bash test/sdk/run.sh path/to/envd
#
# envd and the node test script run together inside one fresh network namespace
# that has only loopback (so the SDK can never reach the internet), a private
# mount namespace (throwaway /root and /home, /etc/passwd and /etc/group copies
# with a `user` account added) and a private PID namespace (everything started
# inside dies with it). npm ci runs before, outside the namespaces. Needs root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENVD_PORT=49983
TEST_UID=31000
HEALTH_TIMEOUT_S=20
TEST_TIMEOUT_S=170

# ---------------------------------------------------------------------------
# Inner part: runs as PID 1 of the new PID namespace, inside the new network
# and mount namespaces. Arguments: WORK dir.
# ---------------------------------------------------------------------------
if [[ "${1:-}" == "__inner" ]]; then
	WORK=$2
	ENVD_PID=""
	stop_envd() {
		if [[ -n "$ENVD_PID" ]] && kill -0 "$ENVD_PID" 2>/dev/null; then
			kill -TERM "$ENVD_PID" 2>/dev/null || true
			for _ in $(seq 1 30); do
				kill -0 "$ENVD_PID" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$ENVD_PID" 2>/dev/null || true
			wait "$ENVD_PID" 2>/dev/null || true
		fi
		ENVD_PID=""
	}
	print_envd_log() {
		echo "----- envd log ($WORK/envd.log) -----" >&2
		cat "$WORK/envd.log" >&2 || true
		echo "----- end of envd log -----" >&2
	}
	# PID 1 of the namespace: when this shell exits, the kernel kills every
	# process left in the namespace (envd's children included).
	trap stop_envd EXIT

	ip link set lo up

	# Whatever we need from the host must stay reachable once /root and /home
	# are covered (the checkout or node could live under either).
	mount --bind "$HERE" "$WORK/sdk"
	if [[ -n "${NODE_PREFIX_BIND:-}" ]]; then
		mount --bind "$NODE_PREFIX_BIND" "$WORK/node"
		export PATH="$WORK/node/bin:$PATH"
	fi
	mount --bind "$WORK/etc/passwd" /etc/passwd
	mount --bind "$WORK/etc/group" /etc/group
	mount --bind "$WORK/root" /root
	mount --bind "$WORK/home" /home

	cd "$WORK"
	export HOME=/root
	# Nothing from the caller may redirect the SDK (E2B_SANDBOX_URL, E2B_DOMAIN,
	# keys, proxies): debug mode must talk to localhost:49983 directly.
	while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(E2B_|(HTTP|HTTPS|ALL|NO)_PROXY$|(http|https|all|no)_proxy$)' || true)
	"$WORK/bin/envd" --port "$ENVD_PORT" >"$WORK/envd.log" 2>&1 &
	ENVD_PID=$!

	# Wait for GET /health -> 204, then POST /init like the host agent does.
	if ! node --input-type=module -e '
		const base = `http://127.0.0.1:${process.argv[1]}`;
		const deadline = Date.now() + Number(process.argv[2]) * 1000;
		let last = "no answer";
		for (;;) {
			try {
				const r = await fetch(`${base}/health`, { signal: AbortSignal.timeout(2000) });
				if (r.status === 204) break;
				last = `HTTP ${r.status}: ${await r.text()}`;
			} catch (e) { last = String(e.cause ?? e); }
			if (Date.now() > deadline) {
				console.error(`envd not healthy after ${process.argv[2]} s (GET /health: ${last})`);
				process.exit(1);
			}
			await new Promise((res) => setTimeout(res, 100));
		}
		const body = { defaultUser: "user", defaultWorkdir: "/home/user", envVars: { WRENN_SDK_TEST: "1" } };
		const r = await fetch(`${base}/init`, {
			method: "POST",
			headers: { "Content-Type": "application/json" },
			body: JSON.stringify(body),
			signal: AbortSignal.timeout(10000),
		});
		if (r.status !== 204) {
			console.error(`POST /init ${JSON.stringify(body)} -> HTTP ${r.status} (want 204): ${await r.text()}`);
			process.exit(1);
		}
	' "$ENVD_PORT" "$HEALTH_TIMEOUT_S"; then
		print_envd_log
		exit 1
	fi
	if ! kill -0 "$ENVD_PID" 2>/dev/null; then
		echo "envd exited during start-up" >&2
		print_envd_log
		exit 1
	fi

	status=0
	(
		cd "$WORK/sdk"
		E2B_DEBUG=true timeout --kill-after=5 "$TEST_TIMEOUT_S" \
			node --test --test-reporter=spec sdk.test.mjs
	) || status=$?
	stop_envd
	if [[ $status -ne 0 ]]; then
		echo "SDK conformance tests failed (exit $status)" >&2
		print_envd_log
	fi
	exit "$status"
fi

# ---------------------------------------------------------------------------
# Outer part.
# ---------------------------------------------------------------------------
if [[ $# -ne 1 ]]; then
	echo "usage: $0 ENVD_BINARY" >&2
	exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "run.sh must run as root: it creates network/mount/PID namespaces and bind-mounts" >&2
	echo "throwaway /root, /home, /etc/passwd and /etc/group for envd (CI runs as root)." >&2
	exit 1
fi
ENVD_BIN=$(readlink -f "$1")
if [[ ! -x "$ENVD_BIN" ]]; then
	echo "envd binary not found or not executable: $1" >&2
	exit 1
fi
for tool in node npm unshare ip mount timeout; do
	command -v "$tool" >/dev/null || { echo "missing required tool: $tool" >&2; exit 1; }
done

# Dependencies, outside the namespace (it has no network).
if [[ ! -f "$HERE/node_modules/.package-lock.json" || "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]]; then
	(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || {
		echo "npm ci failed in $HERE" >&2
		exit 1
	}
fi

WORK=$(mktemp -d /tmp/wrenn-sdk-test.XXXXXX)
NS_PID=""
cleanup() {
	local rc=$?
	if [[ -n "$NS_PID" ]] && kill -0 "$NS_PID" 2>/dev/null; then
		# SIGKILL the namespace's PID 1: the kernel then kills every process of
		# the PID namespace (envd and all its children). unshare itself ignores
		# SIGTERM while it waits, and --kill-child covers unshare dying first.
		local init_pid
		for init_pid in $(cat "/proc/$NS_PID/task/$NS_PID/children" 2>/dev/null); do
			kill -KILL "$init_pid" 2>/dev/null || true
		done
		for _ in $(seq 1 50); do
			kill -0 "$NS_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$NS_PID" 2>/dev/null || true
		wait "$NS_PID" 2>/dev/null || true
	fi
	# The bind mounts only ever existed in the (now dead) private mount
	# namespace, so this removes plain throwaway files only.
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK/sdk" "$WORK/node" "$WORK/bin" "$WORK/etc" "$WORK/root" "$WORK/home/user"
cp "$ENVD_BIN" "$WORK/bin/envd"
chmod 0700 "$WORK/root"

# passwd/group copies with our own `user` (any host `user` entry is replaced).
uid=$TEST_UID
while grep -qE "^[^:]*:[^:]*:$uid:" /etc/passwd || grep -qE "^[^:]*:[^:]*:$uid:" /etc/group; do
	uid=$((uid + 1))
done
grep -vE '^user:' /etc/passwd >"$WORK/etc/passwd"
echo "user:x:$uid:$uid:user:/home/user:/bin/bash" >>"$WORK/etc/passwd"
grep -vE '^user:' /etc/group >"$WORK/etc/group"
echo "user:x:$uid:" >>"$WORK/etc/group"
chmod 0644 "$WORK/etc/passwd" "$WORK/etc/group"
chown "$uid:$uid" "$WORK/home/user"
chmod 0755 "$WORK/home" "$WORK/home/user"

# node installed under /root or /home (nvm & co.) would be hidden in there.
NODE_PREFIX_BIND=""
node_real=$(readlink -f "$(command -v node)")
case "$node_real" in
/root/* | /home/*) NODE_PREFIX_BIND=$(dirname "$(dirname "$node_real")") ;;
esac
export NODE_PREFIX_BIND

unshare --net --mount --propagation private --pid --fork --kill-child --mount-proc \
	bash "$HERE/run.sh" __inner "$WORK" &
NS_PID=$!
status=0
wait "$NS_PID" || status=$?
NS_PID=""
exit "$status"
