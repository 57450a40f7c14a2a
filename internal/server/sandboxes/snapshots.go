package sandboxes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Snapshots: a running or paused sandbox of a team frozen under a name (its memory and
// a copy of its disk, on its host), which the team's creates then name as their
// template and get by restore: a sandbox that starts as the snapshot's was, in its
// shape, with its own identity.
//
// The record (templates, kind snapshot) is the truth; the files on hosts follow it.
// Each version of a snapshot has its own name on its host (host_name), so an
// overwrite first makes the new version, then switches the record to it in one
// transaction, then removes the old version's files: a create restores one version or
// the other, never a mix. A failed write removes the files it made; a delete removes
// the files on every host holding them before the record, and an agent that cannot
// is an error (the record stays, so the delete can be retried), never an orphan.

// deleteSnapshotTimeout bounds a delete's calls to the hosts holding the snapshot.
const deleteSnapshotTimeout = time.Minute

// Snapshot is a team's snapshot as the API shows it.
type Snapshot struct {
	Name string `json:"name"`
	// SandboxID is the sandbox it was taken from, Template that sandbox's template.
	SandboxID string `json:"sandbox_id"`
	Template  string `json:"template"`
	// VCPUs, MemoryMB and DiskMB are the shape of every sandbox created from it.
	VCPUs     int       `json:"vcpus"`
	MemoryMB  int       `json:"memory_mb"`
	DiskMB    int       `json:"disk_mb"`
	SizeBytes int64     `json:"size_bytes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toSnapshot(t db.Template) *Snapshot {
	deref := func(p *int32) int {
		if p == nil {
			return 0
		}
		return int(*p)
	}
	out := &Snapshot{
		Name: t.Name, VCPUs: deref(t.Vcpus), MemoryMB: deref(t.MemoryMB), DiskMB: deref(t.DiskMB),
		SizeBytes: t.SizeBytes, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
	if t.SourceSandboxID != nil {
		out.SandboxID = *t.SourceSandboxID
	}
	if t.BaseTemplate != nil {
		out.Template = *t.BaseTemplate
	}
	return out
}

// checkSnapshotName validates a snapshot's name: a template name, and not "base",
// which every team's default creates name.
func checkSnapshotName(name string) error {
	if err := ident.CheckTemplate(name); err != nil {
		return fmt.Errorf("%w: snapshot name: %v", core.ErrInvalid, err)
	}
	if name == defaultTemplate {
		return fmt.Errorf("%w: snapshot name %q is the default template's", core.ErrInvalid, name)
	}
	return nil
}

// hostNamePattern matches the names newHostName makes: the monitor removes a host's
// versions of that form that no record names (reconcileSnapshots).
var hostNamePattern = regexp.MustCompile(`^snap-[0-9a-f]{24}$`)

// newHostName names a snapshot version's files on its host.
func newHostName() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "snap-" + hex.EncodeToString(b), nil
}

// CreateSnapshot freezes a running or paused sandbox of the principal's team into the
// snapshot name: core.ErrConflict when the name is taken and overwrite is false, or
// the sandbox is in another state; core.ErrNotImplemented when its host cannot.
func (s *Service) CreateSnapshot(ctx context.Context, p *core.Principal, sandboxID, name string, overwrite bool) (*Snapshot, error) {
	if err := checkSnapshotName(name); err != nil {
		return nil, err
	}
	row, err := s.sandboxRow(ctx, p, sandboxID)
	if err != nil {
		return nil, err
	}
	if st := stateOf(row); st != lifecycle.Running && st != lifecycle.Paused {
		return nil, stateConflict(sandboxID, st, "snapshot")
	}
	if !overwrite {
		if _, err := s.q.GetSnapshot(ctx, db.GetSnapshotParams{TeamID: row.TeamID, Name: name}); err == nil {
			return nil, snapshotTaken(name)
		}
	}
	agent, err := s.agentOf(ctx, row)
	if err != nil {
		return nil, err
	}
	hostName, err := newHostName()
	if err != nil {
		return nil, err
	}
	resp, err := agent.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: sandboxID, Name: hostName}))
	if err != nil {
		return nil, s.snapshotError(ctx, row, agent, err)
	}
	s.faultPoint("snapshot/done")
	info := resp.Msg.GetSnapshot()
	// The files exist: from here the record is written whether or not the caller
	// still waits, or the files are removed.
	ctx = context.WithoutCancel(ctx)
	var out db.Template
	var replaced *db.Template
	var replacedHosts []pgtype.UUID
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		shape := db.InsertSnapshotParams{
			TeamID: row.TeamID, Name: name, HostName: &hostName, SourceSandboxID: &row.ID, BaseTemplate: ptr(info.GetTemplate()),
			Vcpus: ptr(info.GetVcpus()), MemoryMB: ptr(info.GetMemoryMb()), DiskMB: ptr(info.GetDiskMb()), SizeBytes: info.GetSizeBytes(),
		}
		cur, err := q.LockSnapshot(ctx, db.LockSnapshotParams{TeamID: row.TeamID, Name: name})
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			out, err = q.InsertSnapshot(ctx, shape)
			if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" {
				return snapshotTaken(name) // made by a concurrent create meanwhile
			}
		case err != nil:
		case !overwrite:
			return snapshotTaken(name)
		default:
			replaced = &cur
			if replacedHosts, err = q.SnapshotHosts(ctx, cur.ID); err != nil {
				return err
			}
			if err := q.ClearTemplateHosts(ctx, cur.ID); err != nil {
				return err
			}
			out, err = q.UpdateSnapshot(ctx, db.UpdateSnapshotParams{
				ID: cur.ID, HostName: shape.HostName, SourceSandboxID: shape.SourceSandboxID, BaseTemplate: shape.BaseTemplate,
				Vcpus: shape.Vcpus, MemoryMB: shape.MemoryMB, DiskMB: shape.DiskMB, SizeBytes: shape.SizeBytes,
			})
		}
		if err != nil {
			return fmt.Errorf("record snapshot %s: %w", name, err)
		}
		if err := q.AddTemplateHost(ctx, db.AddTemplateHostParams{TemplateID: out.ID, HostID: row.HostID}); err != nil {
			return fmt.Errorf("record snapshot %s's host: %w", name, err)
		}
		return core.Audit(ctx, q, p, "snapshot.create", "snapshot", name, map[string]any{
			"sandbox_id": sandboxID, "overwrite": replaced != nil, "size_bytes": info.GetSizeBytes(), "duration_ms": resp.Msg.GetDurationUs() / 1000,
		})
	})
	if err != nil {
		s.removeVersion(ctx, row.HostID, hostName)
		return nil, err
	}
	if replaced != nil && replaced.HostName != nil {
		for _, h := range replacedHosts {
			s.removeVersion(ctx, h, *replaced.HostName)
		}
	}
	return toSnapshot(out), nil
}

// snapshotError maps an agent's refusal to snapshot: a state it refuses is recorded
// (the monitor may not know yet) and named.
func (s *Service) snapshotError(ctx context.Context, row db.Sandbox, agent hostagentv1connect.HostAgentServiceClient, err error) error {
	switch connect.CodeOf(err) {
	case connect.CodeUnimplemented:
		return fmt.Errorf("%w: sandbox %s cannot be snapshotted: its host cannot snapshot VMs (%s)", core.ErrNotImplemented, row.ID, agentMessage(err))
	case connect.CodeFailedPrecondition:
		if now := s.fromHost(ctx, row, agent); now != "" {
			return stateConflict(row.ID, now, "snapshot")
		}
	}
	return fmt.Errorf("snapshot sandbox %s: %w", row.ID, agentError(err))
}

// removeVersion removes a snapshot version's files from a host after its record was
// switched away from them (or never written). It can only be logged: the caller's
// operation succeeded (or failed for its own reason) either way.
func (s *Service) removeVersion(ctx context.Context, hostID pgtype.UUID, hostName string) {
	ctx, cancel := context.WithTimeout(ctx, deleteSnapshotTimeout)
	defer cancel()
	if err := s.deleteOnHost(ctx, hostID, hostName); err != nil {
		s.log.Error("snapshot files left on a host: remove them with the agent's DeleteSnapshot", "host", core.UUIDString(hostID), "host_name", hostName, "err", err)
	}
}

// deleteOnHost removes a snapshot version's files from a host; files already gone
// are no error.
func (s *Service) deleteOnHost(ctx context.Context, hostID pgtype.UUID, hostName string) error {
	agent, err := s.agents.Agent(ctx, core.UUIDString(hostID))
	if err != nil {
		return fmt.Errorf("%w: host %s: %v", core.ErrUnavailable, core.UUIDString(hostID), err)
	}
	_, err = agent.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: hostName}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		return fmt.Errorf("host %s: %w", core.UUIDString(hostID), agentError(err))
	}
	return nil
}

// GetSnapshot returns a snapshot of the principal's team.
func (s *Service) GetSnapshot(ctx context.Context, p *core.Principal, name string) (*Snapshot, error) {
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return nil, err
	}
	t, err := s.q.GetSnapshot(ctx, db.GetSnapshotParams{TeamID: teamID, Name: name})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: snapshot %q", core.ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("get snapshot %s: %w", name, err)
	}
	return toSnapshot(t), nil
}

// ListSnapshots returns the principal's team's snapshots, by name.
func (s *Service) ListSnapshots(ctx context.Context, p *core.Principal) ([]*Snapshot, error) {
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.ListSnapshots(ctx, teamID)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	out := make([]*Snapshot, len(rows))
	for i, r := range rows {
		out[i] = toSnapshot(r)
	}
	return out, nil
}

// DeleteSnapshot removes a snapshot of the principal's team: its files on every host
// holding them, then its record. A host that cannot remove them fails the delete, and
// the snapshot stays. Sandboxes created from it are not affected.
func (s *Service) DeleteSnapshot(ctx context.Context, p *core.Principal, name string) error {
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, deleteSnapshotTimeout)
	defer cancel()
	return s.st.Tx(ctx, func(q *db.Queries) error {
		cur, err := q.LockSnapshot(ctx, db.LockSnapshotParams{TeamID: teamID, Name: name})
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: snapshot %q", core.ErrNotFound, name)
		}
		if err != nil {
			return fmt.Errorf("delete snapshot %s: %w", name, err)
		}
		if _, err := s.removeTemplate(ctx, q, cur); err != nil {
			return fmt.Errorf("delete snapshot %s: %w", name, err)
		}
		return core.Audit(ctx, q, p, "snapshot.delete", "snapshot", name, nil)
	})
}

// removeTemplate deletes a template locked in q's transaction: its files on every
// host recorded as holding them, then its record; it returns the hosts it removed
// files from. A host that cannot remove them is an error, and the caller's rollback
// keeps the record, so the delete can be retried and no files outlive their record.
// A template without files of its own on hosts (a base template, part of every
// host's install) loses only its record. A team's delete of its snapshot and an
// administrator's of any template both come here.
func (s *Service) removeTemplate(ctx context.Context, q *db.Queries, t db.Template) ([]pgtype.UUID, error) {
	hosts, err := q.SnapshotHosts(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("hosts of template %s: %w", t.Name, err)
	}
	var removed []pgtype.UUID
	if t.HostName != nil {
		for _, h := range hosts {
			if err := s.deleteOnHost(ctx, h, *t.HostName); err != nil {
				return nil, err
			}
			removed = append(removed, h)
		}
	}
	if err := q.DeleteTemplate(ctx, t.ID); err != nil {
		return nil, fmt.Errorf("delete template record %s: %w", t.Name, err)
	}
	return removed, nil
}

// resolveSnapshot fits a create that names one of the team's snapshots as its
// template to it: the sandbox's shape is the snapshot's (asking for another is
// invalid), and it is placed where the snapshot's files are. A create naming any
// other template is left as it is.
func (s *Service) resolveSnapshot(ctx context.Context, p *core.Principal, spec *SandboxSpec) error {
	if spec.Template == "" || ident.CheckTemplate(spec.Template) != nil {
		return nil // the default, or a name validate refuses
	}
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return err
	}
	t, err := s.q.ResolveTemplate(ctx, db.ResolveTemplateParams{Name: spec.Template, TeamID: teamID})
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && t.Kind != templateKindSnapshot) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("template %s: %w", spec.Template, err)
	}
	snap := toSnapshot(t)
	if spec.VCPUs != 0 && spec.VCPUs != snap.VCPUs {
		return fmt.Errorf("%w: snapshot %s has %d vCPUs; sandboxes created from it have the same, not %d", core.ErrInvalid, t.Name, snap.VCPUs, spec.VCPUs)
	}
	if spec.MemoryMB != 0 && spec.MemoryMB != snap.MemoryMB {
		return fmt.Errorf("%w: snapshot %s has %d MB of memory; sandboxes created from it have the same, not %d", core.ErrInvalid, t.Name, snap.MemoryMB, spec.MemoryMB)
	}
	spec.VCPUs, spec.MemoryMB = snap.VCPUs, snap.MemoryMB
	hosts, err := s.q.SnapshotHosts(ctx, t.ID)
	if err != nil {
		return fmt.Errorf("template hosts: %w", err)
	}
	spec.snapshot = &resolvedSnapshot{hostName: *t.HostName, hosts: map[string]bool{}}
	for _, h := range hosts {
		spec.snapshot.hosts[core.UUIDString(h)] = true
	}
	return nil
}

// resolvedSnapshot is what a create from a snapshot needs: the snapshot's name on its
// hosts, and those hosts.
type resolvedSnapshot struct {
	hostName string
	hosts    map[string]bool
}

func snapshotTaken(name string) error {
	return fmt.Errorf("%w: snapshot %q exists: overwrite it with ?overwrite=true, or pick another name", core.ErrConflict, name)
}

func ptr[T any](v T) *T { return &v }
