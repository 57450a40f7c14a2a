package envd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	// The guest clock is corrected when it is this far behind or ahead of the host.
	clockBehind = 50 * time.Millisecond
	clockAhead  = 5 * time.Second
)

var (
	identityPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

type initHandler struct {
	cfg  Config
	st   *state.State
	lock chan struct{} // one /init at a time
}

func newInitHandler(cfg Config, st *state.State) *initHandler {
	return &initHandler{cfg: cfg, st: st, lock: make(chan struct{}, 1)}
}

func (h *initHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	if err := h.apply(&req); err != nil {
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

func (h *initHandler) apply(req *envdapi.InitRequest) error {
	if req.Timestamp != nil && h.cfg.InVM {
		if err := h.syncClock(*req.Timestamp); err != nil {
			return err
		}
	}
	if len(req.RandomSeed) > 0 {
		if err := mixEntropy(req.RandomSeed); err != nil {
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

// syncClock sets the guest clock from the host's when it drifted, e.g. after a resume
// from a snapshot taken hours ago.
func (h *initHandler) syncClock(host time.Time) error {
	drift := time.Since(host) // positive: guest ahead
	if drift > -clockBehind && drift < clockAhead {
		return nil
	}
	if err := h.cfg.SetClock(host); err != nil {
		return fmt.Errorf("set clock: %w", err)
	}
	return nil
}

func setSystemClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// mixEntropy writes seed bytes into the kernel's pool. Writing to /dev/urandom mixes them
// in without crediting entropy, which is enough to make clones' streams diverge.
func mixEntropy(seed []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(seed); err != nil {
		return fmt.Errorf("write entropy: %w", err)
	}
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
