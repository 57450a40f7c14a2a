package api

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/auth"
)

type sessionResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	UserID    string    `json:"user_id"`
	TeamID    string    `json:"team_id"`
	Role      string    `json:"role"`
}

// signupRequest and loginRequest are the bodies of a sign-up and a sign-in, with a
// token or with a browser session alike.
type signupRequest struct {
	Email    string `json:"email"`
	Name     string `json:"name"`
	Password string `json:"password"`
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func session(s *accounts.Session) sessionResponse {
	return sessionResponse{Token: s.Token, ExpiresAt: s.ExpiresAt, UserID: s.UserID, TeamID: s.TeamID, Role: string(s.Role)}
}

func (s *Server) signup(w http.ResponseWriter, r *http.Request) {
	var req signupRequest
	if !decode(w, r, &req) {
		return
	}
	sess, err := s.accounts.Signup(r.Context(), req.Email, req.Name, req.Password, s.clientAddr(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, session(sess))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if !decode(w, r, &req) {
		return
	}
	sess, err := s.accounts.Login(r.Context(), req.Email, req.Password, s.clientAddr(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, session(sess))
}

func (s *Server) switchTeam(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TeamID string `json:"team_id"`
	}
	if !decode(w, r, &req) {
		return
	}
	if p := principal(r); p.SessionID != "" {
		// A browser session moves itself: no token is handed to the page.
		bs, err := s.accounts.SessionSwitchTeam(r.Context(), p, req.TeamID)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, cookieSession(bs, s.sessionSecret(r)))
		return
	}
	sess, err := s.accounts.SwitchTeam(r.Context(), principal(r), req.TeamID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, session(sess))
}

type apiKeyResponse struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedBy  string     `json:"created_by,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	// Key is only in the response to its creation; E2BKey is the same key in the form
	// the e2b SDKs accept (E2B_API_KEY).
	Key    string `json:"key,omitempty"`
	E2BKey string `json:"e2b_key,omitempty"`
}

func apiKey(k accounts.APIKey) apiKeyResponse {
	return apiKeyResponse{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedBy: k.CreatedBy, CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt}
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	k, err := s.accounts.CreateAPIKey(r.Context(), principal(r), req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp := apiKey(k.APIKey)
	resp.Key, resp.E2BKey = k.Key, auth.E2BForm(k.Key)
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.accounts.ListAPIKeys(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]apiKeyResponse, 0, len(keys))
	for _, k := range keys {
		out = append(out, apiKey(k))
	}
	writeJSON(w, http.StatusOK, map[string]any{"api_keys": out})
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	if err := s.accounts.RevokeAPIKey(r.Context(), principal(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// clientAddr is the address the sign-up and login throttles count a request by: the
// TCP peer (r.RemoteAddr), or, when the peer is a trusted reverse proxy, the nearest
// untrusted address in X-Forwarded-For (the rightmost: entries left of it were written
// by the client and prove nothing). X-Forwarded-For from anyone else is ignored.
// IPv6 clients are counted by their /64, the smallest block one subscriber usually
// gets, so rotating through one's own addresses does not multiply the limits.
func (s *Server) clientAddr(r *http.Request) string {
	peer, err := parseHost(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	client := peer
	if s.trusts(peer) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // unparseable: stop at the last address a trusted hop vouched for
			}
			client = hop.Unmap().WithZone("")
			if !s.trusts(client) {
				break
			}
		}
	}
	if client.Is6() {
		return netip.PrefixFrom(client, 64).Masked().String()
	}
	return client.String()
}

func (s *Server) trusts(ip netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parseHost is the IP of a host:port (or bare IP), IPv4-mapped addresses as IPv4.
func parseHost(addr string) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return ip, fmt.Errorf("client address %q: %w", addr, err)
	}
	return ip.Unmap().WithZone(""), nil
}

type meResponse struct {
	User struct {
		ID      string `json:"id"`
		Email   string `json:"email"`
		Name    string `json:"name"`
		IsAdmin bool   `json:"is_admin"`
	} `json:"user"`
	CurrentTeamID string     `json:"current_team_id"`
	Teams         []teamJSON `json:"teams"`
}

// me is GET /v1/me: the signed-in user, their teams with roles, and the current team.
func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	me, err := s.accounts.Me(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var resp meResponse
	resp.User.ID, resp.User.Email, resp.User.Name, resp.User.IsAdmin = me.UserID, me.Email, me.Name, me.Admin
	resp.CurrentTeamID, resp.Teams = me.CurrentTeamID, teamsJSON(me.Teams)
	writeJSON(w, http.StatusOK, resp)
}
