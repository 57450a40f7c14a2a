package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// teamRoutes are teams and their members, users' tokens only: every decision is the
// accounts service's, from the database (a member's role, read under the team's lock).
func (s *Server) teamRoutes(r chi.Router) {
	r.Get("/teams", s.listTeams)
	r.Post("/teams", s.createTeam)
	r.Get("/teams/{id}", s.getTeam)
	r.Patch("/teams/{id}", s.renameTeam)
	r.Delete("/teams/{id}", s.deleteTeam)
	r.Get("/teams/{id}/members", s.listMembers)
	r.Post("/teams/{id}/members", s.addMember)
	r.Patch("/teams/{id}/members/{user_id}", s.setMemberRole)
	r.Delete("/teams/{id}/members/{user_id}", s.removeMember)
	r.Post("/teams/{id}/leave", s.leaveTeam)
	r.Get("/users/search", s.searchUsers)
}

type teamJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Slug      string    `json:"slug"`
	Role      string    `json:"role"`
	IsDefault bool      `json:"is_default"`
	IsBYOC    bool      `json:"is_byoc"`
	Members   int       `json:"members"`
	CreatedAt time.Time `json:"created_at"`
}

func teamBody(t *accounts.Team) teamJSON {
	return teamJSON{ID: t.ID, Name: t.Name, Slug: t.Slug, Role: string(t.Role), IsDefault: t.Default, IsBYOC: t.BYOC, Members: t.Members, CreatedAt: t.CreatedAt}
}

func teamsJSON(ts []*accounts.Team) []teamJSON {
	out := make([]teamJSON, len(ts))
	for i, t := range ts {
		out[i] = teamBody(t)
	}
	return out
}

type memberJSON struct {
	UserID   string    `json:"user_id"`
	Email    string    `json:"email"`
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	JoinedAt time.Time `json:"joined_at"`
}

func memberBody(m accounts.Member) memberJSON {
	return memberJSON{UserID: m.UserID, Email: m.Email, Name: m.Name, Role: string(m.Role), JoinedAt: m.JoinedAt}
}

func (s *Server) listTeams(w http.ResponseWriter, r *http.Request) {
	ts, err := s.accounts.ListTeams(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"teams": teamsJSON(ts)})
}

type teamNameRequest struct {
	Name string `json:"name"`
}

func (s *Server) createTeam(w http.ResponseWriter, r *http.Request) {
	var req teamNameRequest
	if !decode(w, r, &req) {
		return
	}
	t, err := s.accounts.CreateTeam(r.Context(), principal(r), req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, teamBody(t))
}

func (s *Server) getTeam(w http.ResponseWriter, r *http.Request) {
	t, err := s.accounts.GetTeam(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, teamBody(t))
}

func (s *Server) renameTeam(w http.ResponseWriter, r *http.Request) {
	var req teamNameRequest
	if !decode(w, r, &req) {
		return
	}
	t, err := s.accounts.RenameTeam(r.Context(), principal(r), chi.URLParam(r, "id"), req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, teamBody(t))
}

// deleteTeam soft-deletes the team, then removes what it holds on hosts while the
// caller waits, as far as the hosts answer; the host monitor finishes the rest.
func (s *Server) deleteTeam(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := s.accounts.DeleteTeam(r.Context(), principal(r), id); err != nil {
		s.fail(w, r, err)
		return
	}
	tid, _ := core.ParseUUID(id) // DeleteTeam parsed it
	if rep := s.sandboxes.PurgeTeam(r.Context(), tid); rep.Left > 0 {
		s.log.Warn("team deleted; some of what it held is left for the host monitor", "team", id, "left", rep.Left)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) {
	ms, err := s.accounts.ListMembers(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]memberJSON, len(ms))
	for i, m := range ms {
		out[i] = memberBody(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": out})
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	}
	if !decode(w, r, &req) {
		return
	}
	m, err := s.accounts.AddMember(r.Context(), principal(r), chi.URLParam(r, "id"), req.Email, core.Role(req.Role))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, memberBody(*m))
}

func (s *Server) setMemberRole(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Role string `json:"role"`
	}
	if !decode(w, r, &req) {
		return
	}
	m, err := s.accounts.SetMemberRole(r.Context(), principal(r), chi.URLParam(r, "id"), chi.URLParam(r, "user_id"), core.Role(req.Role))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, memberBody(*m))
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) {
	if err := s.accounts.RemoveMember(r.Context(), principal(r), chi.URLParam(r, "id"), chi.URLParam(r, "user_id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) leaveTeam(w http.ResponseWriter, r *http.Request) {
	if err := s.accounts.LeaveTeam(r.Context(), principal(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) searchUsers(w http.ResponseWriter, r *http.Request) {
	us, err := s.accounts.SearchUsers(r.Context(), principal(r), r.URL.Query().Get("email"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type userJSON struct {
		ID    string `json:"id"`
		Email string `json:"email"`
		Name  string `json:"name"`
	}
	out := make([]userJSON, len(us))
	for i, u := range us {
		out[i] = userJSON{ID: u.ID, Email: u.Email, Name: u.Name}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}
