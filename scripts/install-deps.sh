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

# The image builder asks apt for Debian's kernel package: it needs package lists even
# when every tool is already installed.
have_lists() { compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; }

if ((${#need[@]})) || ! have_lists; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
fi
if ((${#need[@]})); then
	echo "install-deps: installing ${need[*]}"
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "install-deps: Go is required (https://go.dev/dl), found none on PATH" >&2; exit 1; }
