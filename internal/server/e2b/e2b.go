// Package e2b is the control plane's E2B-compatible REST API: the routes the official
// e2b SDKs call to create, inspect, list, time-limit, pause, resume and kill sandboxes
// (specs/e2b-rest-api.md, E2B's OpenAPI document), at E2B's own paths beside /v1, with
// E2B's field names, states, status codes and error bodies ({"code","message"}). It
// translates; the sandboxes service does the work, so both APIs see one sandbox model.
package e2b

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/httpjson"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// Auth resolves a caller's credentials (the accounts service).
type Auth interface {
	FromAPIKey(ctx context.Context, key string) (*core.Principal, error)
	FromToken(ctx context.Context, token string) (*core.Principal, error)
}

// Config is what the routes need.
type Config struct {
	Auth      Auth
	Sandboxes *sandboxes.Service
	// Domain is WRENN_DOMAIN, returned as the sandboxes' domain so the SDKs reach
	// them at https://{port}-{id}.{Domain}; "" returns null (the SDK's own setting).
	Domain string
	// MaxBody bounds a request body.
	MaxBody int64
	Log     *slog.Logger
}

type handlers struct {
	auth    Auth
	svc     *sandboxes.Service
	domain  *string
	maxBody int64
	log     *slog.Logger
}

// Mount adds E2B's routes to r (at the root: E2B_API_URL is the server itself).
func Mount(r chi.Router, cfg Config) {
	h := &handlers{auth: cfg.Auth, svc: cfg.Sandboxes, maxBody: cfg.MaxBody, log: cfg.Log}
	if cfg.Domain != "" {
		h.domain = &cfg.Domain
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	// E2B's health check (no credentials): the server answers.
	r.Get("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	r.Group(func(r chi.Router) {
		r.Use(h.authenticate)
		// The SDKs create and connect at /v2 (e2b 2.x); E2B's document has them at the
		// root too. Both are served.
		r.Post("/sandboxes", h.create)
		r.Post("/v2/sandboxes", h.create)
		r.Get("/sandboxes", h.listRunning)
		r.Get("/v2/sandboxes", h.list)
		r.Get("/sandboxes/{id}", h.get)
		r.Delete("/sandboxes/{id}", h.kill)
		r.Post("/sandboxes/{id}/timeout", h.setTimeout)
		r.Post("/sandboxes/{id}/refreshes", h.refresh)
		r.Post("/sandboxes/{id}/pause", h.pause)
		r.Post("/sandboxes/{id}/resume", h.resume)
		r.Post("/sandboxes/{id}/connect", h.connect)
		r.Post("/v2/sandboxes/{id}/connect", h.connect)
		r.Get("/sandboxes/{id}/metrics", h.metrics)
		// E2B routes Wrenn does not serve (yet) answer so, in E2B's shape, rather than
		// with a 404 the SDKs would read as "no such sandbox".
		for _, u := range []struct{ method, path, what string }{
			{"GET", "/sandboxes/metrics", "metrics of several sandboxes at once (ask each: GET /sandboxes/{id}/metrics)"},
			{"GET", "/sandboxes/{id}/logs", "sandbox logs"},
			{"GET", "/v2/sandboxes/{id}/logs", "sandbox logs"},
			{"POST", "/sandboxes/{id}/fork", "forking a sandbox"},
			{"POST", "/sandboxes/{id}/snapshots", "E2B's snapshots (use POST /v1/snapshots; a snapshot's name is a templateID)"},
			{"GET", "/snapshots", "E2B's snapshots (use GET /v1/snapshots)"},
			{"PUT", "/sandboxes/{id}/network", "changing a sandbox's network rules"},
		} {
			r.Method(u.method, u.path, notServed(u.what))
		}
	})
}

// notServed answers an E2B route Wrenn does not implement: 501, saying what.
func notServed(what string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotImplemented, "not supported by Wrenn: "+what)
	})
}

type principalKey struct{}

func principal(r *http.Request) *core.Principal {
	p, _ := r.Context().Value(principalKey{}).(*core.Principal)
	return p
}

// authenticate takes X-API-Key (header names are case-insensitive; the SDKs send
// X-API-KEY) in its wrn_ or e2b_ form, or a user's bearer token.
func (h *handlers) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p *core.Principal
		var err error
		switch bearer, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); {
		case r.Header.Get("X-API-Key") != "":
			p, err = h.auth.FromAPIKey(r.Context(), r.Header.Get("X-API-Key"))
		case hasBearer:
			p, err = h.auth.FromToken(r.Context(), strings.TrimSpace(bearer))
		default:
			err = fmt.Errorf("%w: send X-API-Key", core.ErrUnauthorized)
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// errorBody is E2B's error: code is the HTTP status (the JS SDK branches on it).
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Code: status, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail maps a service error to E2B's status and body; anything unexpected is a
// logged 500 that reveals nothing internal.
func (h *handlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	if status, _, ok := core.Classify(err); ok {
		writeError(w, status, err.Error())
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client left
	}
	if core.DatabaseDown(err) {
		h.log.Warn("e2b request failed: the database is unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, core.DatabaseDownMessage)
		return
	}
	h.log.Error("e2b request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}

// sandboxNotFound is E2B's 404 for a sandbox.
func sandboxNotFound(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("Sandbox %q doesn't exist or you don't have access to it", id))
}

// decode reads an optional JSON object body into v (an absent or empty body leaves
// v as it is). Fields Wrenn does not know are ignored, as E2B's API does, so newer
// SDKs keep working; fields it knows but cannot honour are refused by the handlers.
// Names are matched exactly, as E2B's own API does.
func (h *handlers) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, h.maxBody)
	dec := json.NewDecoder(body)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", h.maxBody))
			return false
		case errors.Is(err, io.EOF):
			return true // no body
		}
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "request body: more than one JSON value")
		return false
	}
	if len(raw) == 0 || raw[0] != '{' {
		writeError(w, http.StatusBadRequest, "request body: want a JSON object")
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	// Unknown keys are ignored, but one that only case-folds to a field is not taken
	// for it ({"templateId": …} is not templateID): E2B's API and SDKs match names
	// exactly, and encoding/json alone would not.
	if err := httpjson.CheckKeys(raw, reflect.TypeOf(v)); err != nil {
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

// sandboxID is the path's sandbox id: E2B's legacy "{id}-{clientID}" form is taken
// as its id; more than one "-" is refused.
func sandboxID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := chi.URLParam(r, "id")
	if strings.Count(id, "-") > 1 {
		writeError(w, http.StatusBadRequest, "Invalid sandbox ID")
		return "", false
	}
	id, _, _ = strings.Cut(id, "-")
	return id, true
}
