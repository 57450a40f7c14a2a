#!/usr/bin/env bash
# kvm-host-check.sh — prove the Firecracker driver on a KVM host, in one command.
#
# This project's CI machine cannot run Firecracker (no binary in its registries, and its
# KVM is nested PVM, which cannot run stock kernels), so CI checks the driver against a
# spec-checking stand-in only. On an x86_64 host with KVM (kvm_intel or kvm_amd loaded),
# run this as root from the checkout:
#
#   FIRECRACKER=/path/to/firecracker scripts/kvm-host-check.sh
#
# It installs the build dependencies, puts the given Firecracker (>= 1.12; tested API
# 1.16) first in PATH, builds Wrenn and the base template, and runs the real-Firecracker
# tests: the driver's boot, exec, pause/resume, 20 pause cycles and a snapshot restored
# into 3 clones (TestFirecrackerOnKVM), the uffd handler and memfile tests, and the
# driver's request sequences against the stand-in. Nothing here skips silently: a test
# that cannot run says why, and this script fails if TestFirecrackerOnKVM skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $(id -u) == 0 ]] || { echo "kvm-host-check: run as root (VMs, namespaces, TAP devices)" >&2; exit 1; }
fc=${FIRECRACKER:-$(command -v firecracker || true)}
[[ -n $fc && -x $fc ]] || { echo "kvm-host-check: set FIRECRACKER to the firecracker binary" >&2; exit 1; }
[[ -e /sys/module/kvm_intel || -e /sys/module/kvm_amd ]] || { echo "kvm-host-check: no kvm_intel or kvm_amd module: this host's KVM cannot run stock kernels" >&2; exit 1; }
[[ -r /dev/kvm && -w /dev/kvm ]] || { echo "kvm-host-check: /dev/kvm is not readable and writable" >&2; exit 1; }

bindir=$(mktemp -d)
trap 'rm -rf "$bindir"' EXIT
ln -s "$(readlink -f "$fc")" "$bindir/firecracker"
export PATH="$bindir:$PATH"
echo "kvm-host-check: $("$bindir/firecracker" --version | head -1) on $(uname -r)"

bash scripts/install-deps.sh
make build
export WRENN_ENVD_BIN=$PWD/bin/envd WRENN_TEST_DIR=${WRENN_TEST_DIR:-/var/lib/wrenn-test}
go test -count=1 ./internal/uffd/... ./internal/memfile/ ./internal/vmm/firecracker/... ./internal/vmm/drivers/
log=$(mktemp)
go test -count=1 -v -timeout 30m -run '^TestFirecrackerOnKVM$' ./test/e2e/ | tee "$log"
if grep -q -- '--- SKIP: TestFirecrackerOnKVM' "$log"; then
	echo "kvm-host-check: TestFirecrackerOnKVM skipped (reason above): Firecracker is NOT proven here" >&2
	exit 1
fi
echo "kvm-host-check: Firecracker driver proven on this host"
