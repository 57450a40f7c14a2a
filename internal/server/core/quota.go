package core

import "github.com/wrennhq/wrenn/gen/db"

// Quota is what one team may hold at once, so that no team fills the shared hosts
// (issue 12, finding 5). A limit of 0 is no limit. The server's defaults
// (WRENN_QUOTA_*) apply to every team; a platform administrator may override each
// limit for a team (the teams.quota_* columns, NULL = the default).
//
// Sandboxes, VCPUs and MemoryMB count the team's sandboxes that reserve host capacity
// (every status but stopped and error, as placement counts a host's load: paused ones
// too, as their resume needs the room). APIKeys counts keys not revoked. BYOC teams
// are limited alike: the limits also bound what a team costs the control plane.
type Quota struct {
	Sandboxes int
	VCPUs     int
	MemoryMB  int
	APIKeys   int
}

// For is the team's quota: these defaults with the team's overrides applied.
func (d Quota) For(t db.Team) Quota {
	q := d
	for _, o := range []struct {
		override *int32
		limit    *int
	}{
		{t.QuotaSandboxes, &q.Sandboxes}, {t.QuotaVcpus, &q.VCPUs}, {t.QuotaMemoryMB, &q.MemoryMB}, {t.QuotaAPIKeys, &q.APIKeys},
	} {
		if o.override != nil {
			*o.limit = int(*o.override)
		}
	}
	return q
}

// Exceeds reports whether holding n more of something of which used are held passes
// limit (0: no limit).
func Exceeds(limit, used, n int) bool { return limit > 0 && used+n > limit }

// The largest limits a setting or an override may give (config repeats them; a test
// keeps the two equal). They only refuse typing errors: a real team stays far below.
const (
	MaxQuotaSandboxes = 1_000_000
	MaxQuotaVCPUs     = 1 << 24
	MaxQuotaMemoryMB  = 1<<31 - 1 // teams.quota_memory_mb is an integer
	MaxQuotaAPIKeys   = 1_000_000
)
