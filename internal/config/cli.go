package config

import (
	"log/slog"
	"net/netip"
)

// CLI is what the wrenn CLI's commands read from the environment (their flags are
// per command): the API to talk to and how, the database for `wrenn admin`, and
// WRENN_DIR for `wrenn image build` and `wrenn vm run`.
type CLI struct {
	URL         string // "" = the profile's, else http://127.0.0.1:8080
	Profile     string // "" = the config file's current profile
	APIKey      string // secret
	Password    string // secret
	DatabaseURL string // secret: password
	Dir         string
	VMM         string
	// EgressAllow and EgressDeny: `wrenn vm run`'s sandboxes, as the agent's.
	EgressAllow, EgressDeny []netip.Prefix
	Log                     Log
}

func (c *CLI) table() table {
	logs := logSettings(&c.Log)
	for _, s := range logs {
		s.Flag = "" // the CLI's commands have flags of their own
	}
	egress := []*Setting{egressAllowSetting(&c.EgressAllow), egressDenySetting(&c.EgressDeny)}
	for _, s := range egress {
		s.Flag = ""
		s.Usage = "`wrenn vm run`: as for the agent (keep them equal on one host)"
	}
	return table{program: "wrenn", summary: "the `wrenn` CLI (`login`, `sandbox`, `snapshot`, `team`, `host`, `admin`, `image build`, `vm run`…; their flags are per command, `wrenn help`)", settings: append(append([]*Setting{
		{Env: "WRENN_PROFILE", DefaultDoc: "the config file's current profile, else default", Value: String(&c.Profile, 0),
			Usage: "the saved login to use ('wrenn login --profile P' saves one in $XDG_CONFIG_HOME/wrenn/config); --profile overrides it"},
		{Env: "WRENN_URL", DefaultDoc: "the profile's, else http://127.0.0.1:8080", Value: URL(&c.URL, "http", "https"),
			Usage: "the control plane's URL, over the profile's; --url overrides it"},
		{Env: "WRENN_API_KEY", Secret: true, Value: String(&c.APIKey, 0),
			Usage: "team API key to use instead of the profile's login; --api-key overrides it"},
		{Env: "WRENN_PASSWORD", Secret: true, Value: String(&c.Password, 0),
			Usage: "signup, login and `wrenn admin create-user`: the password (else the first line of stdin)"},
		{Env: "WRENN_DATABASE_URL", Redact: RedactURL, Value: String(&c.DatabaseURL, 0),
			Usage: "`wrenn admin grant|revoke|create-user`: the control plane's PostgreSQL URL"},
		{Env: "WRENN_DIR", Default: "/var/lib/wrenn", Value: String(&c.Dir, 1),
			Usage: "`wrenn image build` and `wrenn vm run`: where templates, kernels and sandboxes live"},
		{Env: "WRENN_VMM", Default: "auto", Value: OneOf(&c.VMM, VMMs...),
			Usage: "`wrenn vm run`: the VM driver, as for the agent"},
	}, egress...), logs...)}
}

// LoadCLI reads the CLI's settings from the environment and validates them.
func LoadCLI(getenv func(string) string) (CLI, error) {
	var c CLI
	if err := c.table().load(nil, getenv); err != nil {
		return CLI{}, err
	}
	return c, c.Validate()
}

// Validate checks every setting; the error names the one at fault.
func (c CLI) Validate() error { return c.table().check() }

// LogValue is every setting by its name, secrets redacted.
func (c CLI) LogValue() slog.Value { return c.table().logValue() }
