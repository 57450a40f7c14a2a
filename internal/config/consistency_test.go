package config_test

import (
	"slices"
	"testing"

	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/proxy"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// The config package repeats a few facts of packages it must not import (envd links
// it): they stay equal here.
func TestMatchesOtherPackages(t *testing.T) {
	s, err := config.LoadServer(nil, func(k string) string {
		return map[string]string{"WRENN_DATABASE_URL": "postgres://h/db", "WRENN_REDIS_URL": "redis://h:6379/0",
			"WRENN_JWT_SECRET": "0123456789abcdef0123456789abcdef"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := [4]int{config.MaxQuotaSandboxes, config.MaxQuotaVCPUs, config.MaxQuotaMemoryMB, config.MaxQuotaAPIKeys},
		[4]int{core.MaxQuotaSandboxes, core.MaxQuotaVCPUs, core.MaxQuotaMemoryMB, core.MaxQuotaAPIKeys}; got != want {
		t.Errorf("quota maxima %v, core's %v", got, want)
	}
	if s.ProxyConnLimit != proxy.DefaultConnLimit {
		t.Errorf("WRENN_PROXY_CONN_LIMIT default %d, proxy.DefaultConnLimit %d", s.ProxyConnLimit, proxy.DefaultConnLimit)
	}
	for _, name := range scheduler.Names() {
		s.Scheduler = name
		if err := s.Validate(); err != nil {
			t.Errorf("scheduler %q: %v", name, err)
		}
	}
	if _, err := scheduler.New(s.Scheduler); err != nil {
		t.Error(err)
	}
	a, err := config.LoadAgent([]string{"--last-slot", "65534"}, func(string) string { return "" })
	if err != nil || a.LastSlot != netslot.MaxIndex {
		t.Errorf("--last-slot %d (netslot.MaxIndex %d): %v", a.LastSlot, netslot.MaxIndex, err)
	}
	a.LastSlot = netslot.MaxIndex + 1
	if a.Validate() == nil {
		t.Errorf("--last-slot past netslot.MaxIndex accepted")
	}
	if !slices.Equal(config.VMMs, []string{"auto", "qemu", "firecracker"}) {
		t.Errorf("VMMs %v", config.VMMs)
	}
}
