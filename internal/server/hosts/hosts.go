package hosts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// RegistrationTTL is how long a registration token can be used.
const RegistrationTTL = time.Hour

// Host is a host as the API shows it.
type Host struct {
	ID              string               `json:"id"`
	TeamID          string               `json:"team_id,omitempty"` // empty: a platform host
	Name            string               `json:"name"`
	Status          scheduler.HostStatus `json:"status"`
	Address         string               `json:"address"`
	CertFingerprint string               `json:"cert_fingerprint,omitempty"`
	AgentVersion    string               `json:"agent_version"`
	VCPUs           int                  `json:"vcpus"`
	MemoryMB        int                  `json:"memory_mb"`
	Sandboxes       int                  `json:"sandboxes"`
	Tags            []string             `json:"tags"`
	CreatedAt       time.Time            `json:"created_at"`
	RegisteredAt    *time.Time           `json:"registered_at,omitempty"`
	LastHeartbeatAt *time.Time           `json:"last_heartbeat_at,omitempty"`
}

func toHost(r db.Host, tags []string, sandboxes int) *Host {
	h := &Host{
		ID: core.UUIDString(r.ID), TeamID: core.UUIDString(r.TeamID), Name: r.Name, Status: scheduler.HostStatus(r.Status), Address: r.Address,
		AgentVersion: r.AgentVersion, VCPUs: int(r.Vcpus), MemoryMB: int(r.MemoryMB), Sandboxes: sandboxes,
		Tags: tags, CreatedAt: r.CreatedAt, RegisteredAt: r.RegisteredAt, LastHeartbeatAt: r.LastHeartbeatAt,
	}
	if h.Tags == nil {
		h.Tags = []string{}
	}
	if r.CertFingerprint != nil {
		h.CertFingerprint = *r.CertFingerprint
	}
	return h
}

// NewHost is a created host with the one-time token its agent registers with.
type NewHost struct {
	*Host
	RegistrationToken string    `json:"registration_token"`
	TokenExpiresAt    time.Time `json:"registration_token_expires_at"`
}

func registrationKey(hash []byte) string { return fmt.Sprintf("wrenn:host-registration:%x", hash) }

// CreateHost records a host and returns the token its agent registers with: a
// platform host (platform admins), or one of the team's own hosts (owners and
// admins of a BYOC team).
func (s *Service) CreateHost(ctx context.Context, p *core.Principal, name string, platform bool) (*NewHost, error) {
	if p.UserID == "" {
		return nil, fmt.Errorf("%w: hosts are managed with a user's token, not an API key", core.ErrForbidden)
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return nil, fmt.Errorf("%w: name is required", core.ErrInvalid)
	}
	if err := ident.CheckText("name", name, 100); err != nil {
		return nil, fmt.Errorf("%w: %v", core.ErrInvalid, err)
	}
	params := db.CreateHostParams{Name: name}
	params.CreatedBy, _ = core.ParseUUID(p.UserID)
	switch {
	case platform && !p.Admin:
		return nil, fmt.Errorf("%w: only platform administrators add platform hosts", core.ErrForbidden)
	case !platform && !p.TeamBYOC:
		return nil, fmt.Errorf("%w: the team does not run its own hosts (BYOC); ask a platform administrator", core.ErrForbidden)
	case !platform && !p.CanManage():
		return nil, fmt.Errorf("%w: only team owners and admins add hosts", core.ErrForbidden)
	case !platform:
		params.TeamID, _ = core.ParseUUID(p.TeamID)
	}
	token, hash := auth.NewOpaqueToken(auth.RegistrationTokenPrefix)
	expires := s.now().Add(RegistrationTTL)
	var row db.Host
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		var err error
		if row, err = q.CreateHost(ctx, params); err != nil {
			return err
		}
		if _, err := q.CreateHostToken(ctx, db.CreateHostTokenParams{HostID: row.ID, TokenHash: hash, CreatedBy: params.CreatedBy, ExpiresAt: expires}); err != nil {
			return err
		}
		if err := core.Audit(ctx, q, p, "host.create", "host", core.UUIDString(row.ID), map[string]any{"name": name, "platform": platform}); err != nil {
			return err
		}
		// The live token is in Redis (single use, expiring); written before the
		// commit, so a committed host always has its token.
		return s.st.Redis.Set(ctx, registrationKey(hash), core.UUIDString(row.ID), RegistrationTTL).Err()
	})
	if err != nil {
		return nil, fmt.Errorf("create host: %w", err)
	}
	return &NewHost{Host: toHost(row, nil, 0), RegistrationToken: token, TokenExpiresAt: expires}, nil
}

// hostFor returns a host the principal may see: every host for platform admins, the
// team's own otherwise; anything else is not found.
func (s *Service) hostFor(ctx context.Context, p *core.Principal, id string) (db.Host, error) {
	hid, err := core.ParseUUID(id)
	if err != nil {
		return db.Host{}, err
	}
	row, err := s.q.GetHost(ctx, hid)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !p.Admin && core.UUIDString(row.TeamID) != p.TeamID) || (err == nil && !p.Admin && !row.TeamID.Valid) {
		return db.Host{}, fmt.Errorf("%w: host %s", core.ErrNotFound, id)
	}
	if err != nil {
		return db.Host{}, fmt.Errorf("get host %s: %w", id, err)
	}
	return row, nil
}

// manageable is hostFor for changes: team hosts need an owner or admin.
func (s *Service) manageable(ctx context.Context, p *core.Principal, id string) (db.Host, error) {
	row, err := s.hostFor(ctx, p, id)
	if err != nil {
		return row, err
	}
	if p.UserID == "" || (!p.Admin && !p.CanManage()) {
		return row, fmt.Errorf("%w: only team owners and admins manage hosts", core.ErrForbidden)
	}
	return row, nil
}

// ListHosts lists the hosts the principal may see.
func (s *Service) ListHosts(ctx context.Context, p *core.Principal) ([]*Host, error) {
	var rows []db.Host
	var err error
	if p.Admin {
		rows, err = s.q.ListHosts(ctx)
	} else {
		tid, perr := core.ParseUUID(p.TeamID)
		if perr != nil {
			return nil, perr
		}
		rows, err = s.q.ListTeamHosts(ctx, tid)
	}
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	loads, err := s.q.HostLoads(ctx)
	if err != nil {
		return nil, fmt.Errorf("host loads: %w", err)
	}
	sandboxes := make(map[pgtype.UUID]int, len(loads))
	for _, l := range loads {
		sandboxes[l.HostID] = int(l.Sandboxes)
	}
	// Every host's tags in one query rather than one per host.
	all, err := s.q.ListAllHostTags(ctx)
	if err != nil {
		return nil, fmt.Errorf("host tags: %w", err)
	}
	tags := map[pgtype.UUID][]string{}
	for _, t := range all {
		tags[t.HostID] = append(tags[t.HostID], t.Tag)
	}
	out := make([]*Host, 0, len(rows))
	for _, r := range rows {
		out = append(out, toHost(r, tags[r.ID], sandboxes[r.ID]))
	}
	return out, nil
}

// GetHost returns one host.
func (s *Service) GetHost(ctx context.Context, p *core.Principal, id string) (*Host, error) {
	row, err := s.hostFor(ctx, p, id)
	if err != nil {
		return nil, err
	}
	tags, err := s.q.ListHostTags(ctx, row.ID)
	if err != nil {
		return nil, fmt.Errorf("tags of host %s: %w", id, err)
	}
	load, err := s.q.HostLoad(ctx, row.ID)
	if err != nil {
		return nil, fmt.Errorf("load of host %s: %w", id, err)
	}
	return toHost(row, tags, int(load.Sandboxes)), nil
}

// TagHost adds (or, with remove, removes) a tag.
func (s *Service) TagHost(ctx context.Context, p *core.Principal, id, tag string, remove bool) error {
	if err := scheduler.ValidTag(tag); err != nil {
		return fmt.Errorf("%w: %v", core.ErrInvalid, err)
	}
	row, err := s.manageable(ctx, p, id)
	if err != nil {
		return err
	}
	if remove {
		n, err := s.q.RemoveHostTag(ctx, db.RemoveHostTagParams{HostID: row.ID, Tag: tag})
		if err == nil && n == 0 {
			return fmt.Errorf("%w: host %s has no tag %q", core.ErrNotFound, id, tag)
		}
		return err
	}
	return s.q.AddHostTag(ctx, db.AddHostTagParams{HostID: row.ID, Tag: tag})
}

// HostBusyError is a refused delete: the host still runs these sandboxes.
type HostBusyError struct{ Sandboxes []string }

func (e *HostBusyError) Error() string {
	return fmt.Sprintf("the host runs %d sandboxes: destroy them first or delete with force=true", len(e.Sandboxes))
}

func (e *HostBusyError) Unwrap() error { return core.ErrConflict }

// DeleteHost removes a host. With live sandboxes it refuses (HostBusyError) unless
// force, which destroys them first (as far as the host answers; the sandboxes are
// recorded stopped either way). The host's credentials stop working at once.
func (s *Service) DeleteHost(ctx context.Context, p *core.Principal, id string, force bool) error {
	row, err := s.manageable(ctx, p, id)
	if err != nil {
		return err
	}
	live, err := s.q.ListHostSandboxes(ctx, pgtype.UUID(row.ID))
	if err != nil {
		return fmt.Errorf("sandboxes of host %s: %w", id, err)
	}
	if len(live) > 0 && !force {
		busy := &HostBusyError{}
		for _, sb := range live {
			busy.Sandboxes = append(busy.Sandboxes, sb.ID)
		}
		return busy
	}
	for _, sb := range live {
		// An unreachable host is not waited for: its agent is refused from now on, and
		// its sandboxes are recorded stopped.
		s.sandboxes.StopOnHost(ctx, sb, "host deleted", scheduler.HostStatus(row.Status) == scheduler.StatusOnline)
	}
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		if _, err := q.DeleteHost(ctx, row.ID); err != nil {
			return err
		}
		if err := q.RevokeHostRefreshTokens(ctx, row.ID); err != nil {
			return err
		}
		return core.Audit(ctx, q, p, "host.delete", "host", id, map[string]any{"force": force, "sandboxes": len(live)})
	})
	if err != nil {
		return fmt.Errorf("delete host %s: %w", id, err)
	}
	s.conns.Evict(id)
	return nil
}
