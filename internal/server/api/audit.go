package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/core"
)

func (s *Server) listAuditLogs(w http.ResponseWriter, r *http.Request) {
	s.auditLogs(w, r, s.accounts.ListAuditLogs)
}

func (s *Server) listAllAuditLogs(w http.ResponseWriter, r *http.Request) {
	s.auditLogs(w, r, s.accounts.ListAllAuditLogs)
}

// auditLogs answers a page of the audit log as list makes it from the request's query.
func (s *Server) auditLogs(w http.ResponseWriter, r *http.Request, list func(ctx context.Context, p *core.Principal, q accounts.AuditQuery) (*accounts.AuditPage, error)) {
	q, err := auditQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	page, err := list(r.Context(), principal(r), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// auditQuery reads before, before_id, limit and the filters (each repeatable, or a
// comma-separated list); the service checks the values.
func auditQuery(v url.Values) (accounts.AuditQuery, error) {
	var q accounts.AuditQuery
	if s := v.Get("before"); v.Has("before") {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return q, fmt.Errorf("before %q is not an RFC 3339 time (the next_before of the previous page)", s)
		}
		q.Before = &t
	}
	if s := v.Get("before_id"); v.Has("before_id") {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return q, fmt.Errorf("before_id %q is not an entry id (the next_before_id of the previous page)", s)
		}
		q.BeforeID = &id
	}
	if s := v.Get("limit"); v.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > accounts.MaxAuditPage {
			return q, fmt.Errorf("limit must be 1 to %d, not %q", accounts.MaxAuditPage, s)
		}
		q.Limit = n
	}
	for _, f := range []struct {
		name string
		out  *[]string
	}{{"action", &q.Actions}, {"resource_type", &q.ResourceTypes}, {"actor", &q.Actors}, {"team_id", &q.Teams}} {
		for _, raw := range v[f.name] {
			for _, one := range strings.Split(raw, ",") {
				if one = strings.TrimSpace(one); one == "" {
					return q, fmt.Errorf("%s has an empty value", f.name)
				}
				*f.out = append(*f.out, one)
			}
		}
	}
	return q, nil
}
