package config

import (
	"log/slog"
	"net"
	"strconv"
)

// Envd is envd's configuration (the daemon inside every sandbox; wrenn-init starts it
// with `--in-vm --port 49983`).
type Envd struct {
	Port            int
	Addr            string // host:port; "" = all interfaces on Port
	InVM            bool
	ForwardLoopback bool
	RunDir          string
	Debug           bool // same as --log-level debug
	Version         bool // print the version and exit
	Log             Log
}

func (c *Envd) table() table {
	return table{program: "envd", summary: "envd, the daemon in every sandbox (flags: `wrenn-init` runs `envd --in-vm --port 49983`)", settings: append([]*Setting{
		{Flag: "port", Default: "49983", Value: Int(&c.Port, 0, 65535),
			Usage: "TCP port to serve on (all interfaces)"},
		{Flag: "addr", Value: Addr(&c.Addr),
			Usage: "listen address host:port (overrides --port)"},
		{Flag: "in-vm", Default: "false", Value: Bool(&c.InVM),
			Usage: "running inside a sandbox VM: allow /init to set the system clock and hostname"},
		{Flag: "forward-loopback", Default: "true", Value: Bool(&c.ForwardLoopback),
			Usage: "with --in-vm: expose TCP services listening only on the guest's loopback on its external addresses"},
		{Flag: "run-dir", Default: "/run/e2b", Value: String(&c.RunDir, 1),
			Usage: "directory for the sandbox identity files"},
		{Flag: "debug", Default: "false", Value: Bool(&c.Debug),
			Usage: "debug logging (same as --log-level debug)"},
		{Flag: "version", Default: "false", Value: Bool(&c.Version),
			Usage: "print the version and exit"},
	}, logSettings(&c.Log)...)}
}

// LoadEnvd reads envd's configuration from its flags (args, without the program name)
// and the environment (only the log settings have variables), and validates it.
func LoadEnvd(args []string, getenv func(string) string) (Envd, error) {
	var c Envd
	if err := c.table().load(args, getenv); err != nil {
		return Envd{}, err
	}
	if c.Debug {
		c.Log.Level = slog.LevelDebug
	}
	return c, c.Validate()
}

// Validate checks every setting; the error names the one at fault.
func (c Envd) Validate() error { return c.table().check() }

// ListenAddr is where envd listens: --addr, else all interfaces on --port.
func (c Envd) ListenAddr() string {
	if c.Addr != "" {
		return c.Addr
	}
	return net.JoinHostPort("", strconv.Itoa(c.Port))
}

// LogValue is every setting by its name.
func (c Envd) LogValue() slog.Value { return c.table().logValue() }
