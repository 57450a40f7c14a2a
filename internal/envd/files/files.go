// Package files serves envd's plain-HTTP `/files` endpoint: GET downloads a file and POST
// uploads one or more, wire-compatible with E2B's envd so the official e2b SDKs work
// unchanged. It does its own authorization (the access-token header or a signed URL,
// because the global token middleware exempts /files), picks the Unix user the request
// acts as, streams bodies without buffering whole files, and replaces uploaded files
// atomically so a failed upload never leaves a truncated file behind.
package files

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/httpx"
	"github.com/wrennhq/wrenn/internal/envd/state"
)

// Signing operations, as E2B names them in the signed string.
const (
	OperationRead  = "read"
	OperationWrite = "write"
)

// accessTokenHeader carries the sandbox access token (section 2.1 of the protocol spec).
const accessTokenHeader = "X-Access-Token"

// copyBufferSize is the size of the buffers used to move file data. Large buffers mean
// few read/write system calls, which is what makes multi-GB transfers fast.
const copyBufferSize = 1 << 20

// Handler serves GET and POST on /files. Create it with New; it is safe for concurrent
// use.
type Handler struct {
	st  *state.State
	log *slog.Logger

	// lookupUser resolves a user name ("" = the default user). It is a field so tests
	// can act as a user whose home is a temporary directory without touching the host.
	lookupUser func(name string) (*state.User, error)
	// now is the clock signature expiry is checked against.
	now func() time.Time

	// bufs holds *[]byte of copyBufferSize, reused across requests so that many
	// concurrent small transfers do not churn megabyte allocations.
	bufs sync.Pool
}

// New returns the /files handler. A nil logger discards logs.
func New(st *state.State, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		st:         st,
		log:        log,
		lookupUser: st.NamedUser,
		now:        time.Now,
	}
	h.bufs.New = func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}
	return h
}

// ServeHTTP dispatches on the method: GET downloads, POST uploads, anything else is 405.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		h.download(w, r)
	case http.MethodPost:
		h.upload(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		httpx.WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on /files", r.Method))
	}
}

// Signature returns the signature E2B's SDKs put in signed /files URLs:
// "v1_" + unpadded standard base64 of SHA-256 over
// "path:operation:username:token" (plus ":expiration" when one is given).
// path and username are the raw query values, operation is "read" or "write".
func Signature(path, operation, username, token string, expiration *int64) string {
	raw := path + ":" + operation + ":" + username + ":" + token
	if expiration != nil {
		raw += ":" + strconv.FormatInt(*expiration, 10)
	}
	sum := sha256.Sum256([]byte(raw))
	return "v1_" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// httpError is a failure with the status and message the client gets.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// params are the query parameters both methods share. The has* flags matter because
// E2B distinguishes an absent parameter from an empty one (an empty path is the
// home directory; an absent one is an error for raw uploads).
type params struct {
	path         string
	hasPath      bool
	username     string
	signature    string
	hasSignature bool
	expiration   *int64
}

func parseParams(r *http.Request) (params, *httpError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return params{}, errorf(http.StatusBadRequest, "invalid query string: %v", err)
	}
	var p params
	p.path, p.hasPath = first(q, "path")
	p.username, _ = first(q, "username")
	p.signature, p.hasSignature = first(q, "signature")
	if raw, ok := first(q, "signature_expiration"); ok {
		// E2B's generated router rejects a non-integer expiration before the handler
		// runs, whether or not a token is set; do the same.
		exp, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return params{}, errorf(http.StatusBadRequest, "invalid format for parameter signature_expiration: %q is not an integer", raw)
		}
		p.expiration = &exp
	}
	return p, nil
}

func first(q url.Values, key string) (string, bool) {
	vs, ok := q[key]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// authorize applies section 2.3: with no token set everything passes; a matching
// X-Access-Token header passes and a mismatching one fails; otherwise the URL must carry
// a valid, unexpired signature for this path, operation and user.
func (h *Handler) authorize(r *http.Request, p params, operation string) *httpError {
	token, set := h.st.Token()
	if !set {
		return nil
	}
	if hdr := r.Header.Get(accessTokenHeader); hdr != "" {
		if h.st.TokenMatches(hdr) {
			return nil
		}
		return errorf(http.StatusUnauthorized, "access token present in header but does not match")
	}
	if !p.hasSignature {
		return errorf(http.StatusUnauthorized, "missing signature query parameter")
	}
	want := Signature(p.path, operation, p.username, token, p.expiration)
	if subtle.ConstantTimeCompare([]byte(want), []byte(p.signature)) != 1 {
		return errorf(http.StatusUnauthorized, "invalid signature")
	}
	if p.expiration != nil && *p.expiration < h.now().Unix() {
		return errorf(http.StatusUnauthorized, "signature is already expired")
	}
	return nil
}

// user picks who the request acts as: the `username` query parameter, else the HTTP
// Basic user, else the default user.
func (h *Handler) user(r *http.Request, p params) (*state.User, *httpError) {
	name := p.username
	if name == "" {
		basic, _, err := state.BasicUsername(r.Header)
		if err != nil {
			return nil, errorf(http.StatusUnauthorized, "error looking up user from Authorization header: %v", err)
		}
		name = basic
	}
	u, err := h.lookupUser(name)
	if err != nil {
		shown := name
		if shown == "" {
			shown = h.st.DefaultUser()
		}
		return nil, errorf(http.StatusUnauthorized, "error looking up user '%s': %v", shown, err)
	}
	return u, nil
}

// getBuf borrows a copy buffer; putBuf returns it.
func (h *Handler) getBuf() *[]byte  { return h.bufs.Get().(*[]byte) }
func (h *Handler) putBuf(b *[]byte) { h.bufs.Put(b) }

// fail writes e and logs it: server-side failures as errors, client mistakes at debug
// level so a noisy client cannot flood the log.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, e *httpError, attrs ...any) {
	attrs = append(attrs, "method", r.Method, "status", e.status, "err", e.msg)
	if e.status >= http.StatusInternalServerError {
		h.log.Error("files: request failed", attrs...)
	} else {
		h.log.Debug("files: request rejected", attrs...)
	}
	httpx.WriteError(w, e.status, e.msg)
}

// errorsIsAny reports whether err matches any of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
