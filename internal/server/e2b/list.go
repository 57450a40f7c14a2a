package e2b

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// list is GET /v2/sandboxes: the team's running and paused sandboxes, filtered, in
// pages ordered by start time; X-Next-Token while more follow, X-Total-Running when
// running ones were asked for.
func (h *handlers) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pq, msg := parseListQuery(q)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if slices.Contains(pq.States, lifecycle.Running) {
		// X-Total-Running counts running sandboxes only, whatever else is listed.
		running := pq.PageFilter
		running.States = statesOf("running")
		n, err := h.svc.CountSandboxes(r.Context(), principal(r), running)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		w.Header().Set("X-Total-Running", strconv.Itoa(n))
	}
	page, err := h.svc.PageSandboxes(r.Context(), principal(r), pq)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if page.Next != nil {
		w.Header().Set("X-Next-Token", encodeToken(*page.Next, pq.Ascending))
	}
	out := make([]listedJSON, 0, len(page.Sandboxes))
	for _, sb := range page.Sandboxes {
		out = append(out, listed(sb))
	}
	writeJSON(w, http.StatusOK, out)
}

// listRunning is the deprecated GET /sandboxes: every running sandbox, filtered by
// metadata, in one answer.
func (h *handlers) listRunning(w http.ResponseWriter, r *http.Request) {
	meta, msg := parseMetadata(r.URL.Query())
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	pq := sandboxes.PageQuery{PageFilter: sandboxes.PageFilter{States: statesOf("running"), Metadata: meta}, Limit: sandboxes.MaxPage}
	out := []listedJSON{}
	for {
		page, err := h.svc.PageSandboxes(r.Context(), principal(r), pq)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		for _, sb := range page.Sandboxes {
			out = append(out, listed(sb))
		}
		if page.Next == nil {
			break
		}
		pq.After = page.Next
	}
	writeJSON(w, http.StatusOK, out)
}

// parseListQuery reads GET /v2/sandboxes's parameters, or says what is wrong.
func parseListQuery(q url.Values) (sandboxes.PageQuery, string) {
	pq := sandboxes.PageQuery{Limit: sandboxes.MaxPage}
	// state: form style, not exploded (state=running,paused); repeated works too.
	seen := map[string]bool{}
	for _, v := range q["state"] {
		for _, st := range strings.Split(v, ",") {
			if statesOf(st) == nil {
				return pq, fmt.Sprintf("invalid state %q: want running or paused", st)
			}
			if !seen[st] {
				seen[st] = true
				pq.States = append(pq.States, statesOf(st)...)
			}
		}
	}
	if len(pq.States) == 0 {
		pq.States = append(statesOf("running"), statesOf("paused")...)
	}
	var msg string
	if pq.Metadata, msg = parseMetadata(q); msg != "" {
		return pq, msg
	}
	if v := q.Get("startedAfter"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return pq, fmt.Sprintf("invalid startedAfter %q: want an RFC 3339 date-time", v)
		}
		pq.StartedAfter = &t
	}
	if v := q.Get("template"); v != "" {
		if strings.Contains(v, ":") {
			return pq, fmt.Sprintf("invalid template %q: tags are not supported", v)
		}
		pq.Template = v
	}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		pq.Ascending = true
	default:
		return pq, fmt.Sprintf("invalid order %q: want asc or desc", q.Get("order"))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > sandboxes.MaxPage {
			return pq, fmt.Sprintf("invalid limit %q: want 1..%d", v, sandboxes.MaxPage)
		}
		pq.Limit = n
	}
	if v := q.Get("nextToken"); v != "" {
		key, ok := decodeToken(v, pq.Ascending)
		if !ok {
			return pq, "Invalid next token"
		}
		pq.After = &key
	}
	return pq, ""
}

// parseMetadata decodes the metadata filter: the SDKs percent-encode each key and
// value, join them as k1=v1&k2=v2 and encode the whole once more, so the value (once
// decoded by the query parser) is unescaped again, split on & and =, and each key
// and value unescaped.
func parseMetadata(q url.Values) (map[string]string, string) {
	v := q.Get("metadata")
	if v == "" {
		return nil, ""
	}
	whole, err := url.QueryUnescape(v)
	if err != nil {
		return nil, fmt.Sprintf("invalid metadata %q: %v", v, err)
	}
	meta := map[string]string{}
	for _, pair := range strings.Split(whole, "&") {
		kv := strings.Split(pair, "=")
		if len(kv) != 2 {
			return nil, fmt.Sprintf("invalid metadata pair %q: want key=value", pair)
		}
		k, err1 := url.QueryUnescape(kv[0])
		val, err2 := url.QueryUnescape(kv[1])
		if err1 != nil || err2 != nil || k == "" {
			return nil, fmt.Sprintf("invalid metadata pair %q", pair)
		}
		meta[k] = val
	}
	return meta, ""
}

// A page token is opaque to clients: base64url of "{order}.{start µs}.{id}". A token
// of the other order is refused, not misread.
func encodeToken(k sandboxes.PageKey, asc bool) string {
	order := "desc"
	if asc {
		order = "asc"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(order + "." + strconv.FormatInt(k.StartedAt.UnixMicro(), 10) + "." + k.ID))
}

func decodeToken(tok string, asc bool) (sandboxes.PageKey, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return sandboxes.PageKey{}, false
	}
	parts := strings.Split(string(raw), ".")
	want := "desc"
	if asc {
		want = "asc"
	}
	if len(parts) != 3 || parts[0] != want || !ident.ValidSandboxID(parts[2]) {
		return sandboxes.PageKey{}, false
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || us <= 0 {
		return sandboxes.PageKey{}, false
	}
	return sandboxes.PageKey{StartedAt: time.UnixMicro(us).UTC(), ID: parts[2]}, true
}
