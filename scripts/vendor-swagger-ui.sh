#!/usr/bin/env bash
# Vendors the Swagger UI files that /docs serves into internal/server/apidocs/assets/swagger-ui/.
# It fetches one pinned swagger-ui-dist release with `npm pack`, refuses it unless the
# tarball's sha512 matches the integrity pinned below, and copies only what the page needs.
# The copied files are committed and embedded, so `go build` never needs npm.
#
# To upgrade: set VERSION, put the new `npm view swagger-ui-dist@VERSION dist.integrity` in
# INTEGRITY, run this script and review the diff.
set -euo pipefail

VERSION=5.35.0
INTEGRITY='sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=='
FILES=(swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE favicon-32x32.png)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/internal/server/apidocs/assets/swagger-ui"

command -v npm >/dev/null || { echo "npm is required (scripts/install-deps.sh installs it)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetching swagger-ui-dist@$VERSION"
(cd "$tmp" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null)
tarball="$tmp/swagger-ui-dist-$VERSION.tgz"
[[ -f "$tarball" ]] || { echo "npm pack did not produce $tarball" >&2; exit 1; }

got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ "$got" != "$INTEGRITY" ]]; then
	echo "integrity mismatch for swagger-ui-dist@$VERSION:" >&2
	echo "  pinned: $INTEGRITY" >&2
	echo "  got:    $got" >&2
	exit 1
fi
echo "integrity ok: $got"

mkdir "$tmp/x"
tar -xzf "$tarball" -C "$tmp/x"
pkg="$tmp/x/package"

rm -rf "$dest"
mkdir -p "$dest"
for f in "${FILES[@]}"; do
	if [[ -f "$pkg/$f" ]]; then
		cp "$pkg/$f" "$dest/$f"
	elif [[ "$f" == NOTICE ]]; then
		continue # not every release ships one
	else
		echo "swagger-ui-dist@$VERSION has no $f" >&2
		exit 1
	fi
done
echo "$VERSION" >"$dest/VERSION"
echo "vendored into ${dest#"$root"/}:"
ls -l "$dest"
