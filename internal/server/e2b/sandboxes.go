package e2b

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// clientID is E2B's deprecated but required clientID; E2B answers this constant.
const clientID = "6532622b"

// defaultTimeoutSec is E2B's create timeout when the request gives none; a connect
// without one gives a resumed sandbox the SDKs' default instead.
const (
	defaultTimeoutSec        = 15
	defaultConnectTimeoutSec = 300
)

// stateOf is a sandbox's state as E2B names it: running or paused only. A sandbox on
// its way between them shows the state it is leaving; one that is starting, stopping,
// stopped or failed does not exist for E2B.
func stateOf(st lifecycle.State) string {
	switch st {
	case lifecycle.Running, lifecycle.Pausing, lifecycle.Missing:
		return "running"
	case lifecycle.Paused, lifecycle.Resuming:
		return "paused"
	}
	return ""
}

// statesOf are the Wrenn states behind an E2B state.
func statesOf(e2bState string) []lifecycle.State {
	switch e2bState {
	case "running":
		return []lifecycle.State{lifecycle.Running, lifecycle.Pausing, lifecycle.Missing}
	case "paused":
		return []lifecycle.State{lifecycle.Paused, lifecycle.Resuming}
	}
	return nil
}

// sandboxJSON is E2B's Sandbox: what create, connect and resume answer.
type sandboxJSON struct {
	TemplateID         string  `json:"templateID"`
	SandboxID          string  `json:"sandboxID"`
	Alias              string  `json:"alias,omitempty"`
	ClientID           string  `json:"clientID"`
	EnvdVersion        string  `json:"envdVersion"`
	EnvdAccessToken    string  `json:"envdAccessToken"`
	TrafficAccessToken *string `json:"trafficAccessToken"`
	Domain             *string `json:"domain"`
}

func (h *handlers) sandbox(sb *sandboxes.Sandbox) sandboxJSON {
	out := sandboxJSON{TemplateID: sb.Template, SandboxID: sb.ID, Alias: sb.Template, ClientID: clientID,
		EnvdVersion: envdapi.Version, EnvdAccessToken: h.svc.EnvdAccessToken(sb.ID), Domain: h.domain}
	if !sb.AllowPublicTraffic {
		t := h.svc.TrafficAccessToken(sb.ID)
		out.TrafficAccessToken = &t
	}
	return out
}

// listedJSON is E2B's ListedSandbox; detailJSON its SandboxDetail.
type listedJSON struct {
	TemplateID  string            `json:"templateID"`
	Alias       string            `json:"alias,omitempty"`
	SandboxID   string            `json:"sandboxID"`
	ClientID    string            `json:"clientID"`
	StartedAt   time.Time         `json:"startedAt"`
	EndAt       time.Time         `json:"endAt"`
	CPUCount    int               `json:"cpuCount"`
	MemoryMB    int               `json:"memoryMB"`
	DiskSizeMB  int               `json:"diskSizeMB"`
	Metadata    map[string]string `json:"metadata"`
	State       string            `json:"state"`
	EnvdVersion string            `json:"envdVersion"`
}

type detailJSON struct {
	listedJSON
	EnvdAccessToken     string        `json:"envdAccessToken"`
	AllowInternetAccess *bool         `json:"allowInternetAccess"`
	Domain              *string       `json:"domain"`
	Network             networkJSON   `json:"network"`
	Lifecycle           lifecycleJSON `json:"lifecycle"`
}

type networkJSON struct {
	AllowPublicTraffic bool `json:"allowPublicTraffic"`
}

type lifecycleJSON struct {
	AutoResume bool   `json:"autoResume"`
	OnTimeout  string `json:"onTimeout"`
}

// never is the endAt of a sandbox without an end (created through /v1 with no idle
// timeout): E2B requires one.
var never = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// endAt is when a sandbox ends: its end, or, for a /v1 sandbox with an idle timeout,
// when that runs out if nothing happens meanwhile.
func endAt(sb *sandboxes.Sandbox) time.Time {
	switch {
	case sb.EndAt != nil:
		return *sb.EndAt
	case sb.TimeoutSec > 0 && sb.LastActiveAt != nil:
		return sb.LastActiveAt.Add(time.Duration(sb.TimeoutSec) * time.Second)
	}
	return never
}

func listed(sb *sandboxes.Sandbox) listedJSON {
	started := sb.CreatedAt
	if sb.StartedAt != nil {
		started = *sb.StartedAt
	}
	return listedJSON{TemplateID: sb.Template, Alias: sb.Template, SandboxID: sb.ID, ClientID: clientID,
		StartedAt: started, EndAt: endAt(sb), CPUCount: sb.VCPUs, MemoryMB: sb.MemoryMB, DiskSizeMB: sb.DiskMB,
		Metadata: sb.Metadata, State: stateOf(sb.Status), EnvdVersion: envdapi.Version}
}

func (h *handlers) detail(sb *sandboxes.Sandbox) detailJSON {
	internet := sb.AllowInternetAccess
	return detailJSON{listedJSON: listed(sb), EnvdAccessToken: h.svc.EnvdAccessToken(sb.ID),
		AllowInternetAccess: &internet, Domain: h.domain,
		Network:   networkJSON{AllowPublicTraffic: sb.AllowPublicTraffic},
		Lifecycle: lifecycleJSON{OnTimeout: sb.OnTimeout}}
}

// newSandbox is E2B's NewSandbox. The fields Wrenn cannot honour are kept raw, so a
// request that uses them is refused by name rather than half-served.
type newSandbox struct {
	TemplateID          *string           `json:"templateID"`
	Timeout             *int              `json:"timeout"`
	AutoPause           *bool             `json:"autoPause"`
	AutoPauseMemory     *bool             `json:"autoPauseMemory"`
	AutoResume          *autoResume       `json:"autoResume"`
	Secure              *bool             `json:"secure"`
	AllowInternetAccess *bool             `json:"allow_internet_access"`
	Network             *networkConfig    `json:"network"`
	Metadata            map[string]string `json:"metadata"`
	EnvVars             map[string]string `json:"envVars"`
	MCP                 json.RawMessage   `json:"mcp"`
	IAM                 json.RawMessage   `json:"iam"`
	VolumeMounts        json.RawMessage   `json:"volumeMounts"`
}

type autoResume struct {
	Enabled bool `json:"enabled"`
}

type networkConfig struct {
	AllowPublicTraffic *bool           `json:"allowPublicTraffic"`
	AllowOut           []string        `json:"allowOut"`
	DenyOut            []string        `json:"denyOut"`
	EgressProxy        json.RawMessage `json:"egressProxy"`
	MaskRequestHost    json.RawMessage `json:"maskRequestHost"`
	Rules              json.RawMessage `json:"rules"`
	HTTPSPorts         json.RawMessage `json:"httpsPorts"`
}

// given reports whether an optional JSON value was sent with any content.
func given(raw json.RawMessage) bool {
	switch strings.TrimSpace(string(raw)) {
	case "", "null", "{}", "[]", `""`:
		return false
	}
	return true
}

// spec turns a create into Wrenn's, or says which part Wrenn cannot honour.
func (req *newSandbox) spec() (sandboxes.SandboxSpec, error) {
	var unsupported []string
	for name, raw := range map[string]json.RawMessage{"mcp": req.MCP, "iam": req.IAM, "volumeMounts": req.VolumeMounts} {
		if given(raw) {
			unsupported = append(unsupported, name)
		}
	}
	if req.AutoPauseMemory != nil && !*req.AutoPauseMemory {
		unsupported = append(unsupported, "autoPauseMemory: false (filesystem-only snapshots)")
	}
	if req.AutoResume != nil && req.AutoResume.Enabled {
		unsupported = append(unsupported, "autoResume (traffic does not resume a paused sandbox; connect does)")
	}
	internet := req.AllowInternetAccess
	var public *bool
	if n := req.Network; n != nil {
		public = n.AllowPublicTraffic
		for name, raw := range map[string]json.RawMessage{"network.egressProxy": n.EgressProxy, "network.maskRequestHost": n.MaskRequestHost,
			"network.rules": n.Rules, "network.httpsPorts": n.HTTPSPorts} {
			if given(raw) {
				unsupported = append(unsupported, name)
			}
		}
		if len(n.AllowOut) > 0 {
			unsupported = append(unsupported, "network.allowOut (per-sandbox egress rules; allow_internet_access and the operator's WRENN_EGRESS_* apply)")
		}
		switch {
		case len(n.DenyOut) == 0:
		case slices.Equal(n.DenyOut, []string{"0.0.0.0/0"}):
			// Deny everything: the same as no internet access, which Wrenn enforces.
			if internet != nil && *internet {
				return sandboxes.SandboxSpec{}, fmt.Errorf("%w: allow_internet_access true contradicts network.denyOut [0.0.0.0/0]", core.ErrInvalid)
			}
			no := false
			internet = &no
		default:
			unsupported = append(unsupported, "network.denyOut other than [\"0.0.0.0/0\"] (per-sandbox egress rules)")
		}
	}
	if len(unsupported) > 0 {
		slices.Sort(unsupported)
		return sandboxes.SandboxSpec{}, fmt.Errorf("%w: not supported by Wrenn: %s", core.ErrInvalid, strings.Join(unsupported, "; "))
	}
	if req.TemplateID == nil || *req.TemplateID == "" {
		return sandboxes.SandboxSpec{}, fmt.Errorf("%w: templateID is required", core.ErrInvalid)
	}
	if strings.Contains(*req.TemplateID, ":") {
		return sandboxes.SandboxSpec{}, fmt.Errorf("%w: template %q: tags are not supported; name the template", core.ErrInvalid, *req.TemplateID)
	}
	timeout := defaultTimeoutSec
	if req.Timeout != nil {
		if timeout = *req.Timeout; timeout <= 0 {
			return sandboxes.SandboxSpec{}, fmt.Errorf("%w: Timeout must be greater than 0", core.ErrInvalid)
		}
	}
	onTimeout := sandboxes.OnTimeoutKill
	if req.AutoPause != nil && *req.AutoPause {
		onTimeout = sandboxes.OnTimeoutPause
	}
	// secure false is not honoured the other way: envd always needs the sandbox's
	// token, which the answer carries and the SDKs send.
	return sandboxes.SandboxSpec{Template: *req.TemplateID, EndInSec: timeout, OnTimeout: onTimeout,
		AllowInternetAccess: internet, AllowPublicTraffic: public, EnvVars: req.EnvVars, Metadata: req.Metadata}, nil
}

func (h *handlers) create(w http.ResponseWriter, r *http.Request) {
	var req newSandbox
	if !h.decode(w, r, &req) {
		return
	}
	spec, err := req.spec()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sb, err := h.svc.CreateSandbox(r.Context(), principal(r), spec)
	if errors.Is(err, core.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("template '%s' not found", spec.Template))
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, h.sandbox(sb))
}

// visible returns a sandbox of the caller's team that exists for E2B (running or
// paused), answering 404 otherwise.
func (h *handlers) visible(w http.ResponseWriter, r *http.Request) (*sandboxes.Sandbox, bool) {
	id, ok := sandboxID(w, r)
	if !ok {
		return nil, false
	}
	sb, err := h.svc.GetSandbox(r.Context(), principal(r), id)
	if errors.Is(err, core.ErrNotFound) || (err == nil && stateOf(sb.Status) == "") {
		sandboxNotFound(w, id)
		return nil, false
	}
	if err != nil {
		h.fail(w, r, err)
		return nil, false
	}
	return sb, true
}

func (h *handlers) get(w http.ResponseWriter, r *http.Request) {
	if sb, ok := h.visible(w, r); ok {
		writeJSON(w, http.StatusOK, h.detail(sb))
	}
}

func (h *handlers) kill(w http.ResponseWriter, r *http.Request) {
	sb, ok := h.visible(w, r)
	if !ok {
		return
	}
	h.noContent(w, r, sb.ID, h.svc.DestroySandbox(r.Context(), principal(r), sb.ID))
}

// noContent answers an operation on sandbox id that returns nothing: 204 when it
// succeeded, E2B's 404 when the sandbox is not there (any more), else the error.
func (h *handlers) noContent(w http.ResponseWriter, r *http.Request, id string, err error) {
	switch {
	case errors.Is(err, core.ErrNotFound):
		sandboxNotFound(w, id)
	case err != nil:
		h.fail(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// timeoutRequest is E2B's SandboxTimeoutRequest and ConnectSandbox.
type timeoutRequest struct {
	Timeout *int  `json:"timeout"`
	Memory  *bool `json:"memory"`
}

func (h *handlers) setTimeout(w http.ResponseWriter, r *http.Request) {
	var req timeoutRequest
	if !h.decode(w, r, &req) {
		return
	}
	if req.Timeout == nil {
		writeError(w, http.StatusBadRequest, "timeout is required")
		return
	}
	sb, ok := h.visible(w, r)
	if !ok {
		return
	}
	_, err := h.svc.SetTimeout(r.Context(), principal(r), sb.ID, *req.Timeout)
	h.noContent(w, r, sb.ID, err)
}

func (h *handlers) refresh(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Duration *int `json:"duration"`
	}
	if !h.decode(w, r, &req) {
		return
	}
	d := defaultTimeoutSec
	if req.Duration != nil {
		if d = *req.Duration; d < 0 || d > 3600 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("duration %d out of range 0..3600", d))
			return
		}
	}
	sb, ok := h.visible(w, r)
	if !ok {
		return
	}
	if d == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	_, err := h.svc.ExtendEnd(r.Context(), principal(r), sb.ID, d)
	h.noContent(w, r, sb.ID, err)
}

func (h *handlers) pause(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Memory *bool `json:"memory"`
	}
	if !h.decode(w, r, &req) {
		return
	}
	if req.Memory != nil && !*req.Memory {
		writeError(w, http.StatusBadRequest, "not supported by Wrenn: memory false (filesystem-only snapshots); pause keeps the memory")
		return
	}
	sb, ok := h.visible(w, r)
	if !ok {
		return
	}
	if stateOf(sb.Status) == "paused" {
		writeError(w, http.StatusConflict, fmt.Sprintf("Error pausing sandbox - sandbox '%s' is already paused", sb.ID))
		return
	}
	if _, err := h.svc.PauseSandbox(r.Context(), principal(r), sb.ID); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// resume is E2B's deprecated resume: a paused sandbox runs again with a new end.
func (h *handlers) resume(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Timeout   *int  `json:"timeout"`
		AutoPause *bool `json:"autoPause"`
		Memory    *bool `json:"memory"`
	}
	if !h.decode(w, r, &req) {
		return
	}
	if req.Memory != nil && !*req.Memory {
		writeError(w, http.StatusBadRequest, "not supported by Wrenn: memory false (resume from the disk alone)")
		return
	}
	timeout := defaultTimeoutSec
	if req.Timeout != nil {
		timeout = *req.Timeout
	}
	sb, ok := h.visible(w, r)
	if !ok {
		return
	}
	if stateOf(sb.Status) == "running" {
		writeError(w, http.StatusConflict, fmt.Sprintf("Sandbox %s is already running", sb.ID))
		return
	}
	id := sb.ID
	sb, resumed, err := h.svc.Connect(r.Context(), principal(r), id, timeout)
	switch {
	case errors.Is(err, core.ErrNotFound):
		sandboxNotFound(w, id)
	case err != nil:
		h.fail(w, r, err)
	case !resumed:
		writeError(w, http.StatusConflict, fmt.Sprintf("Sandbox %s is already running", id))
	default:
		writeJSON(w, http.StatusCreated, h.sandbox(sb))
	}
}

// connect answers a running sandbox (200, its end only extended) or resumes a paused
// one (201).
func (h *handlers) connect(w http.ResponseWriter, r *http.Request) {
	var req timeoutRequest
	if !h.decode(w, r, &req) {
		return
	}
	if req.Memory != nil && !*req.Memory {
		writeError(w, http.StatusBadRequest, "not supported by Wrenn: memory false (resume from the disk alone)")
		return
	}
	id, ok := sandboxID(w, r)
	if !ok {
		return
	}
	// The SDKs send no timeout when their caller gives none: a running sandbox keeps
	// its end, a resumed one gets their default.
	timeout, extend := defaultConnectTimeoutSec, req.Timeout != nil
	if extend {
		if timeout = *req.Timeout; timeout < 0 {
			writeError(w, http.StatusBadRequest, "timeout must not be negative")
			return
		}
		if timeout == 0 {
			timeout, extend = 1, false
		}
	}
	sb, err := h.svc.GetSandbox(r.Context(), principal(r), id)
	if err == nil && stateOf(sb.Status) == "running" && !extend {
		writeJSON(w, http.StatusOK, h.sandbox(sb))
		return
	}
	var resumed bool
	if err == nil {
		sb, resumed, err = h.svc.Connect(r.Context(), principal(r), id, timeout)
	}
	switch {
	case errors.Is(err, core.ErrNotFound):
		sandboxNotFound(w, id)
	case err != nil:
		h.fail(w, r, err)
	case resumed:
		writeJSON(w, http.StatusCreated, h.sandbox(sb))
	default:
		writeJSON(w, http.StatusOK, h.sandbox(sb))
	}
}
