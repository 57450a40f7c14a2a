#!/usr/bin/env bash
# Says which of `make test`'s prerequisites (scripts/prereqs.sh) are missing — the file or
# command, what needs it and the apt package that brings it — and fails when any is,
# instead of letting a tool fail deep inside a test run or a test skip itself quietly.
# Silent when everything is there.
#
#   scripts/check-prereqs.sh          what `make test` needs
#   scripts/check-prereqs.sh --all    also what `make up` and `make help` need
set -euo pipefail
# shellcheck source=scripts/prereqs.sh
. "$(dirname "${BASH_SOURCE[0]}")/prereqs.sh"

all=0
[[ ${1:-} == --all ]] && all=1

missing=()
pkgs=()
for entry in "${PREREQS[@]}"; do
	read -r scope kind target pkg what <<<"$entry"
	[[ $scope == test || $all == 1 ]] || continue
	prereq_present "$kind" "$target" && continue
	hint=" (apt-get install $pkg)"
	[[ $pkg == - ]] && hint=""
	missing+=("$kind $(prereq_target "$target")$hint: $what")
	[[ $pkg == - ]] || [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
done
if old=$(node_too_old); then
	read -r have want <<<"$old"
	missing+=("node >= $want (found $have; Debian 12's nodejs is 18, install Node.js $want or later another way): test/sdk/package.json engines.node")
fi
if [[ $(id -u) != 0 ]]; then
	missing+=("root: make test creates network namespaces, TAP devices, microVMs and mounts, and runs PostgreSQL as its own user (CI runs as root)")
fi

((${#missing[@]})) || exit 0
echo "missing prerequisites:" >&2
for m in "${missing[@]}"; do
	echo "  - $m" >&2
done
if ((${#pkgs[@]})); then
	echo "install them with: bash scripts/install-deps.sh (as root), or apt-get install --no-install-recommends ${pkgs[*]}" >&2
fi
exit 1
