package envd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/httpx"
	"github.com/wrennhq/wrenn/internal/envd/state"
	"golang.org/x/sys/unix"

	"github.com/wrennhq/wrenn/internal/atomicfile"
)

const (
	maxInitBody  = 1 << 20
	initLockWait = 10 * time.Second
	// The guest clock is stepped when it is more than clockBehind behind the host's time
	// or more than clockAhead ahead of it. The asymmetry is request latency: the host's
	// timestamp is already old when it arrives, so a correct guest clock always looks a
	// little ahead, and stepping it back by that latency would make it worse. E2B leaves
	// up to 5 s ahead alone; Wrenn promises the clock within 1 s of the host after /init,
	// so anything beyond 1 s ahead is stepped back too.
	clockBehind = 50 * time.Millisecond
	clockAhead  = time.Second
)

var (
	identityPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// initHandler serves POST /init. It is idempotent: the agent sends it after boot, after
// every resume and for every clone of a snapshot (same token, a newer timestamp, maybe new
// env vars and always a new randomSeed), and each such call is applied in full again:
// the CRNG is reseeded and the clock checked every time. Only a replay — a timestamp not
// newer than the last applied one — is acknowledged without effect.
type initHandler struct {
	cfg  Config
	st   *state.State
	log  *slog.Logger
	lock chan struct{} // one /init at a time
}

func newInitHandler(cfg Config, st *state.State) *initHandler {
	return &initHandler{cfg: cfg, st: st, log: cfg.Logger.With("svc", "init"), lock: make(chan struct{}, 1)}
}

func (h *initHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Taken first, with its monotonic reading: the clock step adds the time the request
	// spent in here (waiting for the lock, reseeding) to the host's timestamp, and the
	// monotonic clock is not moved by clock_settime.
	arrived := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), initLockWait)
	defer cancel()
	select {
	case h.lock <- struct{}{}:
		defer func() { <-h.lock }()
	case <-ctx.Done():
		httpx.WriteError(w, http.StatusServiceUnavailable, "another /init is in progress")
		return
	}

	var req envdapi.InitRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxInitBody+1))
	switch {
	case err != nil:
		httpx.WriteError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	case len(body) > maxInitBody:
		httpx.WriteError(w, http.StatusRequestEntityTooLarge, "init body is larger than 1 MiB")
		return
	case len(body) > 0:
		if err := json.Unmarshal(body, &req); err != nil {
			httpx.WriteError(w, http.StatusBadRequest, "decode init body: "+err.Error())
			return
		}
	}

	if msg, ok := h.authorize(r, &req); !ok {
		http.Error(w, msg, http.StatusUnauthorized)
		return
	}
	if err := validateInit(&req); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Envd-Version", h.cfg.Version)
	if req.Timestamp != nil && !h.st.IsNewerInit(*req.Timestamp) {
		// A replay of an older /init (the agent retries): acknowledged, not re-applied.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := h.apply(r.Context(), &req, arrived); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Timestamp != nil {
		h.st.RecordInit(*req.Timestamp) // only once applied, so a failed /init can be retried
	}
	w.WriteHeader(http.StatusNoContent)
}

// authorize implements /init's own check: with no token set anyone may initialise (first
// boot); otherwise the body must carry the current token, or the X-Access-Token header
// must, which is how the agent rotates the token of a snapshot clone or clears it.
func (h *initHandler) authorize(r *http.Request, req *envdapi.InitRequest) (string, bool) {
	if _, set := h.st.Token(); !set {
		return "", true
	}
	if hdr := r.Header.Get("X-Access-Token"); hdr != "" && h.st.TokenMatches(hdr) {
		return "", true
	}
	if req.AccessToken != nil && *req.AccessToken != "" {
		if h.st.TokenMatches(*req.AccessToken) {
			return "", true
		}
		return "access token validation failed", false
	}
	return "access token reset not authorized", false
}

func validateInit(req *envdapi.InitRequest) error {
	for k := range req.EnvVars {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("invalid environment variable name %q", k)
		}
	}
	for k, v := range req.EnvVars {
		if strings.ContainsAny(v, "\x00") {
			return fmt.Errorf("environment variable %q contains a NUL byte", k)
		}
	}
	if req.DefaultWorkdir != "" && !filepath.IsAbs(req.DefaultWorkdir) {
		return fmt.Errorf("defaultWorkdir %q must be an absolute path", req.DefaultWorkdir)
	}
	if req.DefaultUser != "" {
		if _, err := state.LookupUser(req.DefaultUser); err != nil {
			return fmt.Errorf("defaultUser %q: %w", req.DefaultUser, err)
		}
	}
	if req.SandboxID != "" && !identityPattern.MatchString(req.SandboxID) {
		return fmt.Errorf("invalid sandboxID %q", req.SandboxID)
	}
	if req.TemplateID != "" && !identityPattern.MatchString(req.TemplateID) {
		return fmt.Errorf("invalid templateID %q", req.TemplateID)
	}
	if req.Hostname != "" && !hostnamePattern.MatchString(req.Hostname) {
		return fmt.Errorf("invalid hostname %q", req.Hostname)
	}
	return nil
}

// apply makes the request take effect. The reseed and the clock step come first and are
// done before /init answers, so nothing the agent or a user runs after /init can observe
// the snapshot's random state or its stale time.
func (h *initHandler) apply(ctx context.Context, req *envdapi.InitRequest, arrived time.Time) error {
	if len(req.RandomSeed) > 0 && h.cfg.InVM {
		h.reseed(ctx, req.RandomSeed)
	}
	if req.Timestamp != nil && h.cfg.InVM {
		if err := h.syncClock(ctx, *req.Timestamp, arrived); err != nil {
			return err
		}
	}
	if req.Hostname != "" && h.cfg.InVM {
		if err := unix.Sethostname([]byte(req.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if req.SandboxID != "" {
		if err := h.setIdentity("E2B_SANDBOX_ID", req.SandboxID); err != nil {
			return err
		}
	}
	if req.TemplateID != "" {
		if err := h.setIdentity("E2B_TEMPLATE_ID", req.TemplateID); err != nil {
			return err
		}
	}
	if req.EnvVars != nil {
		h.st.ReplaceUserEnv(req.EnvVars)
	}
	if req.AccessToken != nil {
		h.st.SetToken(*req.AccessToken)
	} else {
		h.st.SetToken("")
	}
	h.st.SetDefaultUser(req.DefaultUser)
	h.st.SetDefaultWorkdir(req.DefaultWorkdir)
	return nil
}

// reseed makes the guest's CRNG depend on the host's seed (see reseedCRNG for why a plain
// write is not enough). A failure never fails /init: the sandbox still works, its random
// numbers are only as unique as the kernel's next periodic reseed makes them, and the
// warning says so.
func (h *initHandler) reseed(ctx context.Context, seed []byte) {
	if err := h.cfg.Reseed(seed); err != nil {
		h.log.WarnContext(ctx, "CRNG not reseeded from the /init seed; clones of one snapshot may share random numbers until the kernel's next reseed", "err", err)
		return
	}
	h.log.DebugContext(ctx, "CRNG reseeded", "seed_bytes", len(seed))
}

// syncClock steps the guest's wall clock to the host's. A paused or snapshotted guest's
// clock stands still while it is frozen, so after a resume it is behind by the length of
// the pause, and a clone is behind by the age of its snapshot.
//
// The host wrote host just before sending the request, so the host's time now is at
// least host + the time since the request arrived (measured on the monotonic clock); the
// network latency before arrival is unknown and not added, which keeps the step from ever
// setting the clock ahead of the host. The drift is measured against that same target.
//
// chrony: on KVM hosts wrenn-init starts chronyd with the host's clock (/dev/ptp0) as its
// only source and "makestep 0.1 -1", i.e. it steps whenever it sees more than 0.1 s of
// offset from that clock. It follows the same clock this timestamp came from, so after
// this step it measures an offset of about zero and has nothing to step back; when it
// stepped first, this check finds the clock in sync and leaves it alone. A step of more
// than 10 s (the usual case after a pause) is seen by chronyd's scheduler as an external
// time jump, after which it drops the samples taken before it instead of applying their
// stale offset again. A smaller step that races a chrony update could be applied twice;
// chrony then steps back to the host's clock at its next update, a few seconds later.
func (h *initHandler) syncClock(ctx context.Context, host, arrived time.Time) error {
	target := host.Add(time.Since(arrived))
	// Round(0) drops the monotonic reading, so this compares wall clocks: the guest's
	// against the host's.
	drift := time.Now().Round(0).Sub(target) // positive: guest ahead
	if drift > -clockBehind && drift < clockAhead {
		return nil
	}
	target = host.Add(time.Since(arrived)) // as late as possible, right before the step
	if err := h.cfg.SetClock(target); err != nil {
		return fmt.Errorf("set clock: %w", err)
	}
	h.log.InfoContext(ctx, "guest clock stepped to the host's", "drift", drift)
	return nil
}

// setIdentity exports an identity variable to processes and writes it to RunDir, where
// tools in the guest read it without going through envd.
func (h *initHandler) setIdentity(key, value string) error {
	h.st.SetInternalEnv(key, value)
	if err := os.MkdirAll(h.cfg.RunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", h.cfg.RunDir, err)
	}
	for name, v := range map[string]string{"." + key: value, ".E2B_SANDBOX": "true"} {
		if err := atomicfile.Write(filepath.Join(h.cfg.RunDir, name), []byte(v), 0o644); err != nil {
			return err
		}
	}
	return nil
}
