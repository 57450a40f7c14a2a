#!/usr/bin/env bash
# Installs the system packages Wrenn's build and tests need on Debian/Ubuntu; a no-op
# when they are present. Needs root for apt-get.
set -euo pipefail
# shellcheck source=scripts/prereqs.sh
. "$(dirname "${BASH_SOURCE[0]}")/prereqs.sh"

# Every package whose prerequisite is missing, once. Checked by the files and commands
# the build uses, not by package names: --no-install-recommends leaves out what only a
# Recommends brings (libprotobuf-dev's well-known types, debootstrap's keyring,
# ca-certificates), and a package dpkg knows may be removed.
need=()
for entry in "${PREREQS[@]}"; do
	read -r _ kind target pkg _ <<<"$entry"
	[[ $pkg == - ]] && continue
	prereq_present "$kind" "$target" && continue
	[[ " ${need[*]} " == *" $pkg "* ]] || need+=("$pkg")
done
has() { [[ " ${need[*]} " == *" $1 "* ]]; }
# The control plane's database; Wrenn runs its own clusters, never the distro's.
if has postgresql; then
	# Keep the package from creating and starting a "main" cluster on 5432.
	mkdir -p /etc/postgresql-common
	grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
		echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
fi
# The control plane's cache; Wrenn runs its own redis-server, never the distro's on 6379.
stop_redis=0
has redis-server && stop_redis=1

# The image builder asks apt for Debian's kernel package: it needs package lists even
# when every tool is already installed. They may be stored compressed
# (Acquire::GzipIndexes: *_Packages.lz4, *_Packages.gz).
have_lists() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

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
# A package installed but its file still missing (e.g. a protoc of its own elsewhere on
# PATH, which looks for the well-known types next to itself): say so now, not mid-build.
# Only after installing: otherwise the loop above just found every one present.
((${#need[@]} == 0)) || for entry in "${PREREQS[@]}"; do
	read -r _ kind target pkg what <<<"$entry"
	[[ $pkg == - ]] && continue
	prereq_present "$kind" "$target" ||
		{ echo "install-deps: $pkg is installed but $kind $(prereq_target "$target") is still missing: $what" >&2; exit 1; }
done
command -v go >/dev/null || { echo "install-deps: Go is required (https://go.dev/dl), found none on PATH" >&2; exit 1; }
if old=$(node_too_old); then
	read -r have want <<<"$old"
	echo "install-deps: warning: node $have is older than $want, which the SDK test needs (test/sdk/package.json); install Node.js $want or later" >&2
fi
