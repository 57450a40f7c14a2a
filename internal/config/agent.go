package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"
)

// Agent is the host agent's (wrenn agent's) configuration.
type Agent struct {
	Dir        string // WRENN_DIR: templates, sandboxes, agent.lock
	Listen     string
	Advertise  string // "" = Listen
	StateDir   string // TLS identity, host credentials, record key; Load defaults it to Dir/agent
	Server     string // control plane URL to register with ("" = none)
	Token      string // secret: one-time registration token
	Secret     string // secret: standalone bearer secret (WRENN_AGENT_SECRET)
	SecretFile string // standalone: file holding the bearer secret (wins over Secret)
	// VMM is the VM driver: auto, qemu or firecracker (auto: the best one this host runs).
	VMM                  string
	VMMBinary            string // the driver's executable ("" = its default name in PATH)
	CPUOvercommit        int
	FirstSlot, LastSlot  int // network slot range; LastSlot 0 = the range's end
	SlotPool             int
	AllowInternetDefault bool
	WarmStart            bool
	// EgressAllow opens non-public ranges to sandboxes with internet access;
	// EgressDeny closes more (and wins over EgressAllow). netslot.Config checks both.
	EgressAllow, EgressDeny []netip.Prefix
	ReapInterval            time.Duration
	// Jail runs each VMM as uid/gid JailUIDBase+slot in a mount namespace of its own;
	// Cgroup ("" = none) is the cgroup under which each sandbox's VMM gets its limits.
	Jail              bool
	JailUIDBase       int
	Cgroup            string
	VMMMemoryOverhead int // MiB
	VMMPids           int
	// DiskMiBPerSec and DiskIOPS bound each sandbox's disk I/O (0 = none).
	DiskMiBPerSec, DiskIOPS int
	FaultPoint              string // fault-injection tests only (agent.FaultPoints)
	// Metrics (Prometheus), as the server's: a listener of their own, or /metrics on
	// Listen to a bearer token (or a file holding it); off when neither is set.
	MetricsListen, MetricsToken, MetricsTokenFile string
	Log                                           Log
}

// VMMs are the values of WRENN_VMM / --vmm.
var VMMs = []string{"auto", "qemu", "firecracker"}

// maxSlot is netslot.MaxIndex (a test keeps them equal; envd must not link netslot).
const maxSlot = 65534

func (c *Agent) table() table {
	return table{program: "wrenn agent", summary: "the host agent (`wrenn agent`, root)", settings: append([]*Setting{
		{Env: "WRENN_DIR", Default: "/var/lib/wrenn", Value: String(&c.Dir, 1),
			Usage: "where templates, kernels and sandboxes live (one agent per WRENN_DIR: it holds WRENN_DIR/agent.lock); put it on XFS or btrfs for reflink disk clones"},
		{Flag: "listen", Env: "WRENN_AGENT_LISTEN", Default: ":50051", Value: Addr(&c.Listen),
			Usage: "address to serve the agent API on"},
		{Flag: "advertise", Env: "WRENN_AGENT_ADVERTISE", DefaultDoc: "the --listen address", Value: Addr(&c.Advertise),
			Usage: "host:port the control plane dials, sent at registration"},
		{Flag: "state-dir", Env: "WRENN_AGENT_STATE_DIR", DefaultDoc: "WRENN_DIR/agent", Value: String(&c.StateDir, 0),
			Usage: "where the agent keeps its TLS identity, host credentials and record.key, the key sealing the secrets in its sandbox records (back it up with WRENN_DIR: without it they do not open)"},
		{Flag: "server", Env: "WRENN_SERVER_URL", Value: URL(&c.Server, "http", "https"),
			Usage: "control plane URL to register with (with --token)"},
		{Flag: "token", Env: "WRENN_HOST_TOKEN", Secret: true, Value: String(&c.Token, 0),
			Usage: "one-time registration token from POST /v1/hosts (`wrenn host create`); ignored once registered"},
		{Env: "WRENN_AGENT_SECRET", Secret: true, Value: String(&c.Secret, 16),
			Usage: "standalone (unregistered) agent: the bearer secret callers present, at least 16 characters"},
		{Flag: "secret-file", Env: "WRENN_AGENT_SECRET_FILE", Value: String(&c.SecretFile, 0),
			Usage: "standalone agent: file holding the bearer secret (instead of WRENN_AGENT_SECRET)"},
		{Flag: "vmm", Env: "WRENN_VMM", Default: "auto", Value: OneOf(&c.VMM, VMMs...),
			Usage: "VM driver: auto (firecracker where its binary and a KVM that runs stock kernels exist, else qemu), qemu or firecracker"},
		{Flag: "vmm-binary", Env: "WRENN_VMM_BINARY", Value: String(&c.VMMBinary, 0),
			Usage: "the VM driver's executable, a path or a name in PATH (default: firecracker or qemu-system-x86_64)"},
		{Flag: "cpu-overcommit", Env: "WRENN_AGENT_CPU_OVERCOMMIT", Default: "4", Value: Int(&c.CPUOvercommit, 1, 1000),
			Usage: "vCPUs offered per host CPU (sandboxes are mostly idle)"},
		{Flag: "first-slot", Env: "WRENN_AGENT_FIRST_SLOT", Default: "1", Value: Int(&c.FirstSlot, 1, maxSlot),
			Usage: "lowest network slot index this agent uses (agents sharing a machine need disjoint ranges)"},
		{Flag: "last-slot", Env: "WRENN_AGENT_LAST_SLOT", Default: "0", DefaultDoc: "0 (the range's end, 65534)", Value: Int(&c.LastSlot, 0, maxSlot),
			Usage: "highest network slot index this agent uses"},
		{Flag: "slot-pool", Env: "WRENN_AGENT_SLOT_POOL", Default: "4", Value: Int(&c.SlotPool, 0, maxSlot),
			Usage: "network slots kept ready (internet off); as many again with internet on when that is the default"},
		{Flag: "allow-internet-default", Env: "WRENN_ALLOW_INTERNET_DEFAULT", Default: "true", Value: Bool(&c.AllowInternetDefault),
			Usage: "internet access of sandboxes whose create does not say"},
		{Flag: "warm-start", Env: "WRENN_AGENT_WARM_START", Default: "true", Value: Bool(&c.WarmStart),
			Usage: "create sandboxes by restoring a memory snapshot of their template (booted once per template and shape, in the background after the first create) instead of booting each"},
		egressAllowSetting(&c.EgressAllow), egressDenySetting(&c.EgressDeny),
		{Flag: "metrics-listen", Env: "WRENN_AGENT_METRICS_LISTEN", Value: Addr(&c.MetricsListen),
			Usage: "address of a listener of its own serving Prometheus metrics at /metrics (plain HTTP; bind it to loopback or a private network); empty: none"},
		{Env: "WRENN_AGENT_METRICS_TOKEN", Secret: true, Value: String(&c.MetricsToken, MinMetricsToken),
			Usage: "bearer token a scrape of /metrics must send, at least 16 characters: /metrics then also answers on the agent's listener (TLS once registered); empty, and no WRENN_AGENT_METRICS_LISTEN: no metrics"},
		{Flag: "metrics-token-file", Env: "WRENN_AGENT_METRICS_TOKEN_FILE", Value: String(&c.MetricsTokenFile, 0),
			Usage: "file holding the metrics bearer token, read at start (instead of WRENN_AGENT_METRICS_TOKEN)"},
		{Flag: "jail", Env: "WRENN_AGENT_JAIL", Default: "true", Value: Bool(&c.Jail),
			Usage: "run each sandbox's VMM jailed: as a uid and gid of its own, with no capabilities and no_new_privs, in a mount namespace holding only its VM's files and the system's read-only /usr, its TAP and control socket passed in as descriptors"},
		{Flag: "jail-uid-base", Env: "WRENN_AGENT_JAIL_UID_BASE", Default: "1000000000", Value: Int(&c.JailUIDBase, 1000, 1<<31-maxSlot-1),
			Usage: "the VMM of the sandbox on network slot N runs as uid and gid (base + N); pick a range no user or container on the host uses"},
		{Flag: "cgroup", Env: "WRENN_AGENT_CGROUP", Default: "wrenn", Value: CgroupPath(&c.Cgroup),
			Usage: "cgroup (relative to each hierarchy's root) under which each sandbox's VMM gets a cgroup limiting its CPU to its vCPUs, its memory to its RAM plus --vmm-memory-overhead, and its tasks to --vmm-pids; empty: no limits"},
		{Flag: "vmm-memory-overhead", Env: "WRENN_AGENT_VMM_MEMORY_OVERHEAD_MIB", Default: "256", Value: Int(&c.VMMMemoryOverhead, 16, 1<<20),
			Usage: "MiB a VMM may use besides its guest's RAM before the kernel kills it (and the sandbox goes to the error state, saying so)"},
		{Flag: "vmm-pids", Env: "WRENN_AGENT_VMM_PIDS", Default: "512", Value: Int(&c.VMMPids, 16, 1<<22),
			Usage: "most tasks (threads included) one VMM may have"},
		{Flag: "disk-mib-per-sec", Env: "WRENN_AGENT_DISK_MIB_PER_SEC", Default: "256", Value: Int(&c.DiskMiBPerSec, 0, 1<<20),
			Usage: "MiB per second one sandbox may read and write on its disk, together (enforced by its VMM, buffered writes included); 0: no limit"},
		{Flag: "disk-iops", Env: "WRENN_AGENT_DISK_IOPS", Default: "8000", Value: Int(&c.DiskIOPS, 0, 1<<24),
			Usage: "disk operations per second one sandbox may issue, reads and writes together; 0: no limit"},
		{Env: "WRENN_AGENT_FAULT_POINT", Value: String(&c.FaultPoint, 0),
			Usage: "for fault-injection tests only: the first operation that reaches this point between its steps (e.g. create/vm, pause/snapshot) stops there until the agent is killed; never set it on a real host"},
		{Flag: "reap-interval", Env: "WRENN_AGENT_REAP_INTERVAL", Default: "1s", Value: Duration(&c.ReapInterval, time.Millisecond),
			Usage: "how often idle sandboxes are looked for"},
	}, logSettings(&c.Log)...)}
}

// LoadAgent reads the host agent's configuration from flags (args, without the
// subcommand) and the environment, and validates it. StateDir defaults to Dir/agent.
func LoadAgent(args []string, getenv func(string) string) (Agent, error) {
	var c Agent
	if err := c.table().load(args, getenv); err != nil {
		return Agent{}, err
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(c.Dir, "agent")
	}
	return c, c.Validate()
}

// Validate checks every setting; the error names the one at fault.
func (c Agent) Validate() error {
	if err := c.table().check(); err != nil {
		return err
	}
	if c.LastSlot != 0 && c.LastSlot < c.FirstSlot {
		return fmt.Errorf("--last-slot/WRENN_AGENT_LAST_SLOT (%d) is below --first-slot/WRENN_AGENT_FIRST_SLOT (%d)", c.LastSlot, c.FirstSlot)
	}
	return checkMetrics(metricsVars{"--metrics-listen/WRENN_AGENT_METRICS_LISTEN", "WRENN_AGENT_METRICS_TOKEN", "--metrics-token-file/WRENN_AGENT_METRICS_TOKEN_FILE"}, c.Listen, c.MetricsListen, c.MetricsToken, c.MetricsTokenFile)
}

// LogValue is every setting by its name, secrets redacted.
func (c Agent) LogValue() slog.Value { return c.table().logValue() }

// The egress settings are shared by the agent and `wrenn vm run`: two programs making
// slots on one host with different policies would keep rebuilding the host's table.
func egressAllowSetting(p *[]netip.Prefix) *Setting {
	return &Setting{Flag: "egress-allow", Env: "WRENN_EGRESS_ALLOW", Value: Prefixes(p),
		Usage: "non-public IPv4 ranges sandboxes with internet access may reach, comma-separated CIDRs (e.g. a LAN package mirror); by default internet access is the public internet only: RFC 1918, 100.64/10, loopback, link-local, multicast, documentation, benchmarking and reserved ranges are closed, and no IPv6 is forwarded. Link-local and Wrenn's own slot ranges cannot be opened"}
}

func egressDenySetting(p *[]netip.Prefix) *Setting {
	return &Setting{Flag: "egress-deny", Env: "WRENN_EGRESS_DENY", Value: Prefixes(p),
		Usage: "more IPv4 ranges sandboxes never reach, comma-separated CIDRs; wins over WRENN_EGRESS_ALLOW, so a range can be cut out of an allowed one"}
}
