#!/usr/bin/env bash
# Installs the system packages Wrenn's build and tests need on Debian/Ubuntu; a no-op
# when they are present. Needs root for apt-get.
set -euo pipefail

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v node >/dev/null || need+=(nodejs npm)
command -v seq >/dev/null || need+=(coreutils)
# Guest images and microVMs.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v lz4 >/dev/null || need+=(lz4)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
# The control plane's database; Wrenn runs its own clusters, never the distro's.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
	need+=(postgresql)
	# Keep the package from creating and starting a "main" cluster on 5432.
	mkdir -p /etc/postgresql-common
	grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
		echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
fi

# The control plane's cache; Wrenn runs its own redis-server, never the distro's on 6379.
stop_redis=0
if ! command -v redis-server >/dev/null; then
	need+=(redis-server)
	stop_redis=1
fi

# The image builder asks apt for Debian's kernel package: it needs package lists even
# when every tool is already installed.
have_lists() { compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; }

if ((${#need[@]})) || ! have_lists; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
fi
if ((${#need[@]})); then
	echo "install-deps: installing ${need[*]}"
	# Keep packages from starting their services (redis-server on 6379): invoke-rc.d
	# asks policy-rc.d, and 101 means "not allowed". Only when no policy is in place.
	policy=/usr/sbin/policy-rc.d
	own_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	if ((own_policy)); then
		rm -f "$policy"
		trap - EXIT
	fi
	# Belt and braces: if the distro's redis started anyway (systemd host, other
	# policy), stop and disable it; Wrenn starts its own (scripts/services.sh).
	if ((stop_redis)); then
		if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
			systemctl disable --now redis-server >/dev/null 2>&1 || true
		elif [[ -x /etc/init.d/redis-server ]]; then
			/etc/init.d/redis-server stop >/dev/null 2>&1 || true
		fi
	fi
fi
command -v go >/dev/null || { echo "install-deps: Go is required (https://go.dev/dl), found none on PATH" >&2; exit 1; }
