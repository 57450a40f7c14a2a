// Package api is the control plane's REST surface under /v1 (and, through package
// e2b, E2B's routes beside it): chi routes, request
// decoding with limits, errors as {"error":{"code","message"}}, and authentication of
// every request (JWT, X-API-Key or the dashboard's session cookie, session.go) into a
// principal resolved from the database.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/httpjson"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/apidocs"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/e2b"
	"github.com/wrennhq/wrenn/internal/server/hosts"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// maxBody bounds JSON request bodies (and any other body but a file's).
const maxBody = 1 << 20

// Services are what the handlers call: one service per area of the control plane.
type Services struct {
	Accounts  *accounts.Service
	Hosts     *hosts.Service
	Sandboxes *sandboxes.Service
	// OAuth runs sign-ins through providers (GitHub); nil: none is configured.
	OAuth *oauth.Flow
	// Ready reports whether PostgreSQL and Redis answer (core.Store.Ready), for
	// GET /healthz.
	Ready func(context.Context) error
	// TrustedProxies are the reverse proxies (WRENN_TRUSTED_PROXIES) whose
	// X-Forwarded-For names the client; none: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// Domain is WRENN_DOMAIN: E2B's answers name it as the sandboxes' domain.
	Domain string
	// PublicURL is WRENN_PUBLIC_URL ("": unset): the origin the dashboard's pages
	// come from, and, when https, browser-session cookies are Secure and __Host-.
	PublicURL string
	// Requests learns of every request answered (metrics); nil: nothing does.
	Requests RequestObserver
}

// Server holds the handlers' dependencies.
type Server struct {
	accounts  *accounts.Service
	hosts     *hosts.Service
	sandboxes *sandboxes.Service
	oauth     *oauth.Flow
	ready     func(context.Context) error
	trusted   []netip.Prefix
	// publicOrigin is PublicURL without a trailing "/"; publicHTTPS: it is https.
	publicOrigin string
	publicHTTPS  bool
	log          *slog.Logger
	// streamIdle bounds a pause of a file transfer and an exec stream's silence.
	streamIdle time.Duration
}

// New returns the /v1 router; streamIdle is how long a file upload or download may
// pause (httplimit.Limits.StreamIdle).
func New(svc Services, streamIdle time.Duration, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{accounts: svc.Accounts, hosts: svc.Hosts, sandboxes: svc.Sandboxes, oauth: svc.OAuth, ready: svc.Ready, trusted: svc.TrustedProxies, log: log, streamIdle: streamIdle,
		publicOrigin: strings.TrimSuffix(svc.PublicURL, "/"), publicHTTPS: strings.HasPrefix(strings.ToLower(svc.PublicURL), "https://")}
	r := chi.NewRouter()
	if svc.Requests != nil {
		r.Use(observe(svc.Requests))
	}
	r.Use(s.limitBodies())
	r.Get("/healthz", s.healthz)
	docs := apidocs.Handler()
	r.Get("/openapi.yaml", docs.ServeHTTP)
	r.Get("/docs", docs.ServeHTTP)
	r.Get("/docs/*", docs.ServeHTTP)
	r.Route("/v1", func(r chi.Router) {
		s.hostRoutes(r)
		r.Post("/auth/signup", s.signup)
		r.Post("/auth/login", s.login)
		r.Get("/auth/oauth/{provider}", s.oauthStart)
		r.Get("/auth/oauth/{provider}/callback", s.oauthCallback)
		r.Post("/auth/session", s.sessionSignIn)
		r.Post("/auth/session/signup", s.sessionSignup)
		// A token (or session) for a team its user has left still moves them to
		// another team, and a session still signs out.
		r.With(s.authenticateWith(true, false)).Post("/auth/switch-team", s.switchTeam)
		r.With(s.authenticateWith(true, false)).Delete("/auth/session", s.signOut)
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate(false))
			r.Get("/auth/session", s.getSession)
			r.Get("/me", s.me)
			s.teamRoutes(r)
			r.Post("/api-keys", s.createAPIKey)
			r.Get("/api-keys", s.listAPIKeys)
			r.Delete("/api-keys/{id}", s.revokeAPIKey)
			s.quotaRoutes(r)
			r.Get("/audit-logs", s.listAuditLogs)
			r.Get("/admin/audit-logs", s.listAllAuditLogs)
			s.adminRoutes(r)
		})
		// Sandboxes take a user's token or a team API key.
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate(true))
			r.Post("/sandboxes", s.createSandbox)
			r.Get("/sandboxes", s.listSandboxes)
			r.Get("/sandboxes/{id}", s.getSandbox)
			r.Get("/sandboxes/{id}/logs", s.sandboxLogs)
			r.Delete("/sandboxes/{id}", s.destroySandbox)
			r.Post("/sandboxes/{id}/exec", s.exec)
			r.Get("/sandboxes/{id}/exec/stream", s.execStream)
			r.Post("/sandboxes/{id}/ping", s.ping)
			r.Post("/sandboxes/{id}/pause", s.pauseSandbox)
			r.Post("/sandboxes/{id}/resume", s.resumeSandbox)
			s.metricRoutes(r)
			s.snapshotRoutes(r)
			for _, f := range s.fileRoutes() {
				r.Method(f.method, f.pattern, f.handler)
			}
			s.dirRoutes(r)
		})
	})
	// E2B's REST API, at E2B's paths (E2B_API_URL is this server).
	e2b.Mount(r, e2b.Config{Auth: svc.Accounts, Sandboxes: svc.Sandboxes, Domain: svc.Domain, MaxBody: maxBody, Log: log})
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route")
	})
	return r
}

// healthz answers 200 when the control plane can reach PostgreSQL and Redis (for load
// balancers and `make up`), 503 naming what is down otherwise.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		s.log.Error("not ready", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "PostgreSQL or Redis is unreachable (details in the server's log)")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type ctxKey struct{}

// principal returns the authenticated caller of a request.
func principal(r *http.Request) *core.Principal {
	p, _ := r.Context().Value(ctxKey{}).(*core.Principal)
	return p
}

// authenticate resolves `Authorization: Bearer <jwt>`, `X-API-Key` or the session
// cookie into a principal; allowKeys false keeps account routes to users only.
func (s *Server) authenticate(allowKeys bool) func(http.Handler) http.Handler {
	return s.authenticateWith(false, allowKeys)
}

// authenticateWith is authenticate; with anyTeam a user's token or session is
// resolved to the user alone, whether or not they are still in its team
// (UserFromToken, FromSession), for the routes that move them out of it.
// Credentials are taken in this order: a bearer token, an API key, the session
// cookie (with its CSRF and Origin checks, session.go).
func (s *Server) authenticateWith(anyTeam, allowKeys bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var p *core.Principal
			var err error
			switch bearer, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); {
			case hasBearer && anyTeam:
				p, err = s.accounts.UserFromToken(r.Context(), strings.TrimSpace(bearer))
			case hasBearer:
				p, err = s.accounts.FromToken(r.Context(), strings.TrimSpace(bearer))
			case r.Header.Get("X-API-Key") != "":
				if !allowKeys {
					writeError(w, http.StatusForbidden, "forbidden", "this route needs a user's token, not an API key")
					return
				}
				p, err = s.accounts.FromAPIKey(r.Context(), r.Header.Get("X-API-Key"))
			case s.sessionSecret(r) != "":
				var ok bool
				if p, ok = s.fromCookie(w, r, s.sessionSecret(r), anyTeam); !ok {
					return
				}
			default:
				err = fmt.Errorf("%w: send Authorization: Bearer <token> or X-API-Key, or sign in (POST /v1/auth/session)", core.ErrUnauthorized)
			}
			if err != nil {
				s.fail(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
		})
	}
}

// decode reads a JSON body strictly: it must be one JSON object (not null, an array or
// a string), with no unknown fields (names matched exactly, not case-folded) and
// nothing after it.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", tooLargeMessage)
			return false
		}
		if bodyTimedOut(w, err) {
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_json", "request body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if bodyTimedOut(w, err) {
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_json", "request body: more than one JSON value")
		return false
	}
	// A JSON null would decode into the zero request and, e.g., create a sandbox.
	if raw[0] != '{' {
		writeError(w, http.StatusBadRequest, "invalid_json", "request body: want a JSON object")
		return false
	}
	strict := json.NewDecoder(bytes.NewReader(raw))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "request body: "+err.Error())
		return false
	}
	if err := httpjson.CheckKeys(raw, reflect.TypeOf(v)); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "request body: "+err.Error())
		return false
	}
	return true
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail maps a service error to its status; anything unexpected is a logged 500 with a
// message that reveals nothing internal.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	// Throttled or busy answers say when to come back (accounts.TooManyError, BusyError).
	var retry interface{ RetryIn() time.Duration }
	if errors.As(err, &retry) {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.RetryIn().Seconds()))))
	}
	if status, code, ok := core.Classify(err); ok {
		writeError(w, status, code, err.Error())
		return
	}
	if core.DatabaseDown(err) {
		s.log.Warn("request failed: the database is unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", core.DatabaseDownMessage)
		return
	}
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}
