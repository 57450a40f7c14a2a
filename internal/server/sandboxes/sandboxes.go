package sandboxes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/gen/db"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// SandboxSpec is a create request.
type SandboxSpec struct {
	Template            string
	VCPUs               int
	MemoryMB            int
	TimeoutSec          int
	AllowInternetAccess *bool
	// AllowPublicTraffic false makes the sandbox's ports (but envd's) need the team's
	// API key or the traffic token returned at create.
	AllowPublicTraffic *bool
	EnvVars            map[string]string
	Metadata           map[string]string
	// EndInSec > 0 gives the sandbox an end that many seconds from now (E2B's
	// timeout), at which it is stopped, or paused when OnTimeout is "pause"; 0: no
	// end, only the idle timeout TimeoutSec.
	EndInSec  int
	OnTimeout string // "kill" (the default) or "pause"
	// HostTags places the sandbox only on a host carrying every one of these tags.
	// Not part of the REST create (E2B's request has no such field); it is how a
	// template or a future API field asks for particular hosts.
	HostTags []string

	// snapshot: Template names one of the team's snapshots (resolveSnapshot).
	snapshot *resolvedSnapshot
}

// defaultTemplate is the template of a create that names none.
const defaultTemplate = "base"

// Sandbox is a sandbox as the API shows it.
type Sandbox struct {
	ID                  string          `json:"id"`
	Template            string          `json:"template"`
	Status              lifecycle.State `json:"status"`
	VCPUs               int             `json:"vcpus"`
	MemoryMB            int             `json:"memory_mb"`
	TimeoutSec          int             `json:"timeout_sec"`
	AllowInternetAccess bool            `json:"allow_internet_access"`
	AllowPublicTraffic  bool            `json:"allow_public_traffic"`
	// TrafficAccessToken is shown once, in the create answer of a private sandbox.
	TrafficAccessToken string            `json:"traffic_access_token,omitempty"`
	Metadata           map[string]string `json:"metadata"`
	Error              string            `json:"error,omitempty"`
	CreatedAt          time.Time         `json:"created_at"`
	StartedAt          *time.Time        `json:"started_at,omitempty"`
	StoppedAt          *time.Time        `json:"stopped_at,omitempty"`
	// PausedAt is when a paused sandbox was paused (by the API or its idle timeout).
	PausedAt *time.Time `json:"paused_at,omitempty"`
	// EndAt is when the sandbox ends whatever it does (E2B's lifecycle), with
	// OnTimeout saying how: stopped ("kill") or paused ("pause"). Nil: no end but
	// the idle timeout.
	EndAt     *time.Time `json:"end_at,omitempty"`
	OnTimeout string     `json:"on_timeout"`
	DiskMB    int        `json:"disk_mb"`
	// Limits is what its host's kernel holds its VMM to, as the host reported when
	// it last started or resumed it; nil before (or from a host without limits).
	Limits *Limits `json:"limits,omitempty"`
	// LastActiveAt is when it last ran a command, served a request or resumed.
	LastActiveAt *time.Time `json:"-"`
}

// Limits are a sandbox's VMM's cgroup limits, jail and disk rate, as its host
// enforces them.
type Limits struct {
	CPUs        float64 `json:"cpus"`         // CPU bandwidth in CPUs (0 = none)
	MemoryBytes int64   `json:"memory_bytes"` // guest RAM plus the VMM's allowance; over it the VMM is killed (0 = none)
	Pids        int64   `json:"pids"`         // tasks, threads included (0 = none)
	JailUID     uint32  `json:"jail_uid"`     // the unprivileged uid the VMM runs as (0 = not jailed)
	// The guest's disk I/O, reads and writes together, as its VMM bounds it (0 = none).
	DiskBytesPerSec int64 `json:"disk_bytes_per_sec"`
	DiskOpsPerSec   int64 `json:"disk_ops_per_sec"`
}

// limitsJSON is the limits column's value for what an agent reported (nil keeps the
// column as it is).
func limitsJSON(l *pb.SandboxLimits) []byte {
	if l == nil {
		return nil
	}
	b, _ := json.Marshal(Limits{CPUs: l.GetCpus(), MemoryBytes: l.GetMemoryBytes(), Pids: l.GetPids(), JailUID: l.GetJailUid(),
		DiskBytesPerSec: l.GetDiskBytesPerSec(), DiskOpsPerSec: l.GetDiskOpsPerSec()})
	return b
}

// stateOf is a row's status as a lifecycle state: the database stores the state's
// name (its CHECK constraint lists the same names), and the code compares states.
func stateOf(r db.Sandbox) lifecycle.State { return lifecycle.State(r.Status) }

func toSandbox(r db.Sandbox) *Sandbox {
	sb := &Sandbox{
		ID: r.ID, Template: r.Template, Status: stateOf(r), VCPUs: int(r.Vcpus), MemoryMB: int(r.MemoryMB),
		TimeoutSec: int(r.TimeoutSec), AllowInternetAccess: r.AllowInternetAccess, AllowPublicTraffic: r.AllowPublicTraffic, CreatedAt: r.CreatedAt,
		StartedAt: r.StartedAt, StoppedAt: r.StoppedAt, PausedAt: r.PausedAt, Metadata: map[string]string{},
		EndAt: r.EndAt, OnTimeout: r.OnTimeout, DiskMB: int(r.DiskMB), LastActiveAt: r.LastActiveAt,
	}
	_ = json.Unmarshal(r.Metadata, &sb.Metadata)
	if len(r.Limits) > 0 {
		var l Limits
		if json.Unmarshal(r.Limits, &l) == nil {
			sb.Limits = &l
		}
	}
	if r.Error != nil {
		sb.Error = *r.Error
	}
	return sb
}

// CreateSandbox places the sandbox on a host — reserving its capacity there in the
// same transaction that records it (see place) — has the host's agent boot it and
// returns it running. If the agent fails, the sandbox is recorded as failed (status
// error, which holds no capacity) — never left starting — and the error is returned.
func (s *Service) CreateSandbox(ctx context.Context, p *core.Principal, spec SandboxSpec) (*Sandbox, error) {
	pl, err := s.placeSandbox(ctx, p, spec)
	if err != nil {
		return nil, err
	}
	return s.boot(ctx, pl)
}

// backgroundBootTimeout bounds a create that StartSandbox left booting: longer than
// any boot the agent allows (its boot timeout, 2 min by default, plus disk and slot),
// so it only ends a create whose agent stopped answering. The sandbox is then
// recorded failed, as when the agent fails it.
const backgroundBootTimeout = 10 * time.Minute

// StartSandbox is CreateSandbox without the wait: it places the sandbox (its row
// recorded, its capacity reserved, the same refusals) and returns it starting while
// its host boots it in the background, on a context detached from the caller's. The
// boot then records the sandbox running, or error with the agent's message, exactly
// as CreateSandbox does; GetSandbox shows which. A private sandbox's traffic token is
// in this answer, the only one that shows it.
func (s *Service) StartSandbox(ctx context.Context, p *core.Principal, spec SandboxSpec) (*Sandbox, error) {
	pl, err := s.placeSandbox(ctx, p, spec)
	if err != nil {
		return nil, err
	}
	out := toSandbox(pl.row)
	out.TrafficAccessToken = pl.trafficToken
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backgroundBootTimeout)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer cancel()
		if _, err := s.boot(bctx, pl); err != nil {
			s.log.Warn("background create failed", "sandbox", pl.row.ID, "err", err)
		}
	}()
	return out, nil
}

// Wait waits for the creates StartSandbox left booting (tests; a server that ends
// without waiting cuts their agent calls, the agents roll them back and the host
// monitor records them lost after its grace period).
func (s *Service) Wait() { s.bg.Wait() }

// placed is a sandbox recorded on its host with its capacity reserved, not booted.
type placed struct {
	row          db.Sandbox
	agent        hostagentv1connect.HostAgentServiceClient
	req          *pb.CreateSandboxRequest
	endInSec     *int32
	trafficToken string
}

// placeSandbox checks a create and places it (see place): the first half of a
// create, after which the sandbox is starting.
func (s *Service) placeSandbox(ctx context.Context, p *core.Principal, spec SandboxSpec) (*placed, error) {
	if err := s.resolveSnapshot(ctx, p, &spec); err != nil {
		return nil, err
	}
	spec = spec.withDefaults()
	if err := spec.validate(); err != nil {
		return nil, err
	}
	params, trafficToken, err := s.newRecord(p, spec)
	if err != nil {
		return nil, err
	}
	row, agent, err := s.place(ctx, p, spec, params)
	if err != nil {
		return nil, err
	}
	s.sandboxesChanged(ctx, row.TeamID)
	req := &pb.CreateSandboxRequest{
		SandboxId: row.ID, Template: spec.Template, Vcpus: int32(spec.VCPUs), MemoryMb: int32(spec.MemoryMB),
		EnvVars: spec.EnvVars, TimeoutSec: int32(spec.TimeoutSec), Metadata: spec.Metadata, AllowInternetAccess: &params.AllowInternetAccess,
		EnvdAccessToken: s.EnvdAccessToken(row.ID),
	}
	if spec.snapshot != nil {
		// The agent knows the snapshot by its name there; template and shape are its.
		req.Template, req.Snapshot = "", spec.snapshot.hostName
	}
	return &placed{row: row, agent: agent, req: req, endInSec: params.EndInSec, trafficToken: trafficToken}, nil
}

// boot has the placed sandbox's agent create it and records the end: running, or
// error with the agent's message (release), so it is never left starting.
func (s *Service) boot(ctx context.Context, pl *placed) (*Sandbox, error) {
	row := pl.row
	s.faultPoint("create/placed")
	resp, err := pl.agent.CreateSandbox(ctx, connect.NewRequest(pl.req))
	if err != nil {
		msg := agentMessage(err)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg = "the create did not finish in time: " + msg
		}
		s.release(ctx, row, msg)
		return nil, fmt.Errorf("create sandbox %s: %w", row.ID, agentError(err))
	}
	s.faultPoint("create/booted")
	hostIP := resp.Msg.GetSandbox().GetHostIp()
	// The sandbox runs whether or not the caller is still there: record it regardless.
	running := db.UpdateSandboxStatusParams{ID: row.ID, TeamID: row.TeamID, Status: string(lifecycle.Running), HostIP: &hostIP,
		Limits: limitsJSON(resp.Msg.GetSandbox().GetLimits()), EndInSec: pl.endInSec}
	row, err = s.q.UpdateSandboxStatus(context.WithoutCancel(ctx), running)
	s.sandboxesChanged(ctx, pl.row.TeamID)
	if err != nil {
		return nil, core.Unrecorded(fmt.Errorf("record running sandbox %s: %w", pl.row.ID, err), "sandbox "+pl.row.ID+" was created on its host")
	}
	out := toSandbox(row)
	out.TrafficAccessToken = pl.trafficToken
	return out, nil
}

// release gives a failed create's reservation back: status error holds no capacity.
// Should recording it fail, the row stays starting, and the host monitor marks it
// lost (error) once it is older than its grace period and the host does not run it.
func (s *Service) release(ctx context.Context, row db.Sandbox, msg string) {
	if _, err := s.q.UpdateSandboxStatus(context.WithoutCancel(ctx), db.UpdateSandboxStatusParams{ID: row.ID, TeamID: row.TeamID, Status: string(lifecycle.Error), Error: &msg}); err != nil {
		s.log.Error("record failed create", "sandbox", row.ID, "err", err)
	}
	s.sandboxesChanged(ctx, row.TeamID)
}

// newRecord is the sandbox's row but its host, and the traffic token shown once in
// the create answer of a private sandbox.
func (s *Service) newRecord(p *core.Principal, spec SandboxSpec) (db.CreateSandboxParams, string, error) {
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return db.CreateSandboxParams{}, "", err
	}
	meta, err := json.Marshal(orEmpty(spec.Metadata))
	if err != nil {
		return db.CreateSandboxParams{}, "", fmt.Errorf("metadata: %w", err)
	}
	params := db.CreateSandboxParams{
		ID: ident.NewSandboxID(), TeamID: teamID, Template: spec.Template, Status: string(lifecycle.Starting),
		Vcpus: int32(spec.VCPUs), MemoryMB: int32(spec.MemoryMB), TimeoutSec: int32(spec.TimeoutSec),
		AllowInternetAccess: s.allowInternet, Metadata: meta, AllowPublicTraffic: true, OnTimeout: &spec.OnTimeout,
	}
	if spec.EndInSec > 0 {
		n := int32(spec.EndInSec)
		params.EndInSec = &n
	}
	if spec.AllowInternetAccess != nil {
		params.AllowInternetAccess = *spec.AllowInternetAccess
	}
	var trafficToken string
	if spec.AllowPublicTraffic != nil && !*spec.AllowPublicTraffic {
		params.AllowPublicTraffic = false
		trafficToken = s.TrafficAccessToken(params.ID)
		params.TrafficTokenHash = auth.HashToken(trafficToken)
	}
	return params, trafficToken, nil
}

func (spec SandboxSpec) withDefaults() SandboxSpec {
	if spec.Template == "" {
		spec.Template = defaultTemplate
	}
	if spec.VCPUs == 0 {
		spec.VCPUs = 1
	}
	if spec.MemoryMB == 0 {
		spec.MemoryMB = 512
	}
	if spec.OnTimeout == "" {
		spec.OnTimeout = OnTimeoutKill
	}
	return spec
}

// Platform-wide bounds, checked before anything is recorded; a host may refuse less
// (its own limits), which then shows on the sandbox as its error.
const (
	maxVCPUs      = 64
	maxMemoryMB   = 256 << 10
	maxTimeoutSec = 7 * 24 * 3600
	maxMetadata   = 64
	maxHostTags   = 16
)

func (spec SandboxSpec) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", core.ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case ident.CheckTemplate(spec.Template) != nil:
		return bad("%v", ident.CheckTemplate(spec.Template))
	case spec.VCPUs < 1 || spec.VCPUs > maxVCPUs:
		return bad("vcpus %d out of range 1..%d", spec.VCPUs, maxVCPUs)
	case spec.MemoryMB < 128 || spec.MemoryMB > maxMemoryMB:
		return bad("memory_mb %d out of range 128..%d", spec.MemoryMB, maxMemoryMB)
	case spec.TimeoutSec < 0 || spec.TimeoutSec > maxTimeoutSec:
		return bad("timeout_sec %d out of range 0..%d", spec.TimeoutSec, maxTimeoutSec)
	case spec.EndInSec != 0 && checkEnd(spec.EndInSec) != nil:
		return checkEnd(spec.EndInSec)
	case spec.OnTimeout != OnTimeoutKill && spec.OnTimeout != OnTimeoutPause:
		return bad("on_timeout %q: want %s or %s", spec.OnTimeout, OnTimeoutKill, OnTimeoutPause)
	case len(spec.Metadata) > maxMetadata:
		return bad("at most %d metadata entries", maxMetadata)
	case len(spec.HostTags) > maxHostTags:
		return bad("at most %d host tags", maxHostTags)
	}
	for _, tag := range spec.HostTags {
		if err := scheduler.ValidTag(tag); err != nil {
			return bad("host tag %q: %v", tag, err)
		}
	}
	if err := ident.CheckEnvVars(spec.EnvVars); err != nil {
		return bad("%v", err)
	}
	for k, v := range spec.Metadata {
		if len(k) == 0 {
			return bad("metadata keys are 1..128 bytes and values at most 1024")
		}
		// Metadata is stored as jsonb, which refuses NUL (SQLSTATE 22P05).
		if err := ident.CheckText("metadata key", k, 128); err != nil {
			return bad("%v", err)
		}
		if err := ident.CheckText("metadata value of "+k, v, 1024); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// GetSandbox returns a sandbox of the principal's team; another team's is not found.
func (s *Service) GetSandbox(ctx context.Context, p *core.Principal, id string) (*Sandbox, error) {
	row, err := s.sandboxRow(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return toSandbox(row), nil
}

func (s *Service) sandboxRow(ctx context.Context, p *core.Principal, id string) (db.Sandbox, error) {
	if !ident.ValidSandboxID(id) {
		return db.Sandbox{}, fmt.Errorf("%w: sandbox %q", core.ErrNotFound, id)
	}
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return db.Sandbox{}, err
	}
	row, err := s.q.GetSandbox(ctx, db.GetSandboxParams{ID: id, TeamID: teamID})
	if errors.Is(err, pgx.ErrNoRows) {
		return db.Sandbox{}, fmt.Errorf("%w: sandbox %s", core.ErrNotFound, id)
	}
	if err != nil {
		return db.Sandbox{}, fmt.Errorf("get sandbox %s: %w", id, err)
	}
	return row, nil
}

// DestroySandbox stops a sandbox of the principal's team.
func (s *Service) DestroySandbox(ctx context.Context, p *core.Principal, id string) error {
	return s.destroy(ctx, p, id, nil)
}

// destroy is DestroySandbox, with more to say in its audit entry (why).
func (s *Service) destroy(ctx context.Context, p *core.Principal, id string, why map[string]any) error {
	row, err := s.sandboxRow(ctx, p, id)
	if err != nil {
		return err
	}
	if stateOf(row) == lifecycle.Stopped {
		return fmt.Errorf("%w: sandbox %s is already stopped", core.ErrNotFound, id)
	}
	// A sandbox whose host is unreachable (missing) or gone is recorded stopped at
	// once; the host monitor stops it if its host comes back still running it.
	if agent, err := s.agentOf(ctx, row); err == nil {
		if stateOf(row) != lifecycle.Missing {
			s.flushMetrics(ctx, id, agent) // its charts, kept before its host forgets them
		}
		_, err = agent.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
		switch code := connect.CodeOf(err); {
		case err == nil, code == connect.CodeNotFound:
		case stateOf(row) == lifecycle.Missing || code == connect.CodeUnavailable:
			s.log.Warn("destroy on an unreachable host: recorded stopped, the monitor finishes it", "sandbox", id, "err", err)
		default:
			return fmt.Errorf("destroy sandbox %s: %w", id, agentError(err))
		}
	} else if stateOf(row) != lifecycle.Missing && row.HostID.Valid {
		return err
	}
	s.faultPoint("destroy/done")
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		if _, err := q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: id, TeamID: row.TeamID, Status: string(lifecycle.Stopped)}); err != nil {
			return err
		}
		return core.Audit(ctx, q, p, "sandbox.destroy", "sandbox", id, why)
	})
	s.sandboxesChanged(ctx, row.TeamID)
	if err != nil {
		return core.Unrecorded(fmt.Errorf("record stopped sandbox %s: %w", id, err), "sandbox "+id+" was destroyed on its host")
	}
	return nil
}

// StopOnHost destroys a sandbox on its host as far as the host answers (only tried
// when reachable) and records it stopped with why; the monitor stops what an
// unreachable host still runs when it is back.
func (s *Service) StopOnHost(ctx context.Context, sb db.Sandbox, why string, reachable bool) {
	if agent, err := s.agentOf(ctx, sb); err == nil && reachable {
		s.flushMetrics(ctx, sb.ID, agent)
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := agent.DestroySandbox(dctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: sb.ID})); err != nil {
			s.log.Warn("destroy sandbox on its host", "sandbox", sb.ID, "why", why, "err", err)
		}
		cancel()
	}
	if _, err := s.q.SetSandboxStatusByHost(ctx, db.SetSandboxStatusByHostParams{ID: sb.ID, HostID: sb.HostID, Status: string(lifecycle.Stopped), Error: &why, FromStatus: sb.Status}); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		s.log.Error("record stopped sandbox", "sandbox", sb.ID, "err", err)
	}
	s.sandboxesChanged(ctx, sb.TeamID)
}
