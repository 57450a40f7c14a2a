# What Wrenn's build, tests and `make up` need from the system, in one place: sourced by
# scripts/install-deps.sh (installs what is missing) and scripts/check-prereqs.sh (says
# what is missing, before `make test`). Debian 12 package names; Ubuntu's are the same.
#
# One entry per line: SCOPE KIND TARGET PACKAGE WHAT
#   SCOPE   test: `make test` needs it (checked and installed); run: `make up` or `make
#           help` need it (installed only)
#   KIND    cmd:  a command on PATH, where having the command proves its package usable
#           file: a file (a glob: any match) where a command proves nothing — headers and
#                 data files of -dev packages, keyrings, CA bundles, Recommends that
#                 --no-install-recommends leaves out. @protoc/ stands for the directory
#                 above the protoc on PATH: protoc looks for the well-known types in
#                 <that>/include, nowhere else
#           pkg:  a package that is installed (not merely known to dpkg, as after
#                 `apt-get remove`), where a file of that name may come from another one
#   PACKAGE the apt package that brings it; - when none does (WHAT then says what to do)
#   WHAT    what needs it, for the messages
# shellcheck disable=SC2034 # used by the scripts that source this file
PREREQS=(
	"test cmd  go                 -                  the Go toolchain (https://go.dev/dl; Debian's is too old)"
	"test cmd  git                git                lint and check-generate (git ls-files, git status)"
	"test cmd  make               make               the Makefile"
	"test cmd  protoc             protobuf-compiler  make generate"
	"test file @protoc/include/google/protobuf/timestamp.proto libprotobuf-dev protobuf's well-known types that proto/ imports (make generate; only a Recommends of protobuf-compiler)"
	"test file /etc/ssl/certs/ca-certificates.crt ca-certificates TLS to the Go module proxy (make generate's tools) and the npm registry (only a Recommends of nodejs)"
	"test cmd  ip                 iproute2           network namespaces (netslot, e2e and SDK tests; ss in services.sh)"
	"test cmd  unshare            util-linux         envd tests and the SDK test (namespaces)"
	"test cmd  nsenter            util-linux         e2e agents inside host namespaces"
	"test cmd  runuser            util-linux         PostgreSQL run as its own user (pgtest, services.sh)"
	"test cmd  mount              mount              loop mounts (xfs tests) and the SDK test"
	"test cmd  timeout            coreutils          the SDK test"
	"test cmd  pgrep              procps             e2e tests"
	"test cmd  qemu-system-x86_64 qemu-system-x86    microVMs"
	"test cmd  debootstrap        debootstrap        guest templates (internal/image, e2e)"
	"test file /usr/share/keyrings/debian-archive-keyring.gpg debian-archive-keyring debootstrap's check of Debian's Release signature (only a Recommends of debootstrap)"
	"test cmd  gpgv               gpgv               debootstrap's signature check (only a Recommends of debootstrap, through gnupg)"
	"test cmd  mkfs.ext4          e2fsprogs          template disks (mkfs.ext4, debugfs in tests, resize2fs in the agent)"
	"test cmd  mkfs.xfs           xfsprogs           reflink clones of template disks (rootfs and bench tests)"
	"test cmd  xz                 xz-utils           xz-compressed kernels and modules (Debian's)"
	"test cmd  zstd               zstd               zstd-compressed kernels and modules (Ubuntu's)"
	"test cmd  lz4                lz4                kernel payload tests"
	"test pkg  busybox-static     busybox-static     the VMM tests' initramfs (a static busybox; /bin/busybox of package busybox is not)"
	"test file /usr/lib/postgresql/*/bin/initdb postgresql control-plane tests (pgtest) and make up (services.sh)"
	"test cmd  redis-server       redis-server       control-plane tests (redistest) and make up (services.sh)"
	"test cmd  node               nodejs             the SDK conformance test and the web dashboard's build (Node.js 20.19+)"
	"test cmd  npm                npm                the SDK conformance test and the web dashboard (npm ci)"
	"test file /usr/bin/chromium  chromium           the dashboard's browser test (test/web: Debian's Chromium, driven by playwright-core, which downloads none)"
	"test file /var/lib/apt/lists/*_Packages* - apt's package lists, for the kernel and busybox the image builder downloads with apt (run apt-get update; the lists may be compressed)"
	"test file /dev/net/tun       -                  TAP devices for microVMs (the kernel's tun module: modprobe tun)"
	"test file /usr/share/bash-completion/bash_completion bash-completion 'wrenn completion bash' (cobra's script needs its helpers; the completion test loads it)"
	"run  cmd  curl               curl               make up's API calls"
	"run  file /usr/lib/python3*/json/__init__.py python3 make up reads JSON with python3 (python3-minimal has no json module)"
	"run  cmd  column             bsdextrautils      make help"
)

# prereq_resolve TARGET: sets PREREQ_TARGET to the path or glob TARGET stands for,
# without a subshell: make up runs these checks on every start.
prereq_resolve() {
	local protoc=/usr/bin/protoc # Debian's; before it is installed, that is where it goes
	PREREQ_TARGET=$1
	[[ $1 == @protoc/* ]] || return 0
	hash protoc 2>/dev/null && protoc=${BASH_CMDS[protoc]}
	[[ ! -L $protoc ]] || protoc=$(readlink -f "$protoc")
	protoc=${protoc%/*}
	PREREQ_TARGET=${protoc%/*}/${1#@protoc/}
}

# prereq_target TARGET: prints the path or glob TARGET stands for.
prereq_target() {
	prereq_resolve "$1"
	echo "$PREREQ_TARGET"
}

# prereq_present KIND TARGET: true if the prerequisite is there.
prereq_present() {
	prereq_resolve "$2"
	case $1 in
	cmd) command -v "$PREREQ_TARGET" >/dev/null ;;
	file) compgen -G "$PREREQ_TARGET" >/dev/null ;;
	pkg) [[ $(dpkg-query -W -f='${db:Status-Status}' "$PREREQ_TARGET" 2>/dev/null) == installed ]] ;;
	*)
		echo "prereqs: unknown kind $1" >&2
		return 2
		;;
	esac
}

# node_too_old: prints "have want" and succeeds when node is older than the SDK test's
# engines.node minimum (Debian 12's nodejs is 18; the e2b SDK needs 20).
node_too_old() {
	local dir=. pkg line want= have w h i
	[[ ${BASH_SOURCE[0]} != */* ]] || dir=${BASH_SOURCE[0]%/*}
	pkg=$dir/../test/sdk/package.json
	command -v node >/dev/null || return 1
	# Read with builtins, like the checks above; node itself is the one process.
	while IFS= read -r line; do
		[[ $line =~ \"node\":\ *\"\>=([0-9.]+)\" ]] && want=${BASH_REMATCH[1]} && break
	done 2>/dev/null <"$pkg" || true
	[[ -n $want ]] || return 1
	have=$(node --version 2>/dev/null) || return 1
	have=${have#v}
	IFS=. read -ra w <<<"$want"
	IFS=. read -ra h <<<"$have"
	for ((i = 0; i < ${#w[@]}; i++)); do
		[[ ${h[i]:-0} =~ ^[0-9]+$ ]] || return 1
		((10#${h[i]:-0} > 10#${w[i]})) && return 1
		((10#${h[i]:-0} < 10#${w[i]})) && break
	done
	((i < ${#w[@]})) || return 1 # equal
	echo "$have $want"
}
