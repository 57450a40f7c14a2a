package api

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
)

// Sign-in through an OAuth provider is two browser navigations: oauthStart sends the
// browser to the provider with a state cookie, the provider sends it back to
// oauthCallback, which checks the state, asks the provider who signed in, and sends
// the browser on to the page it started from with a session.

// oauthStart is GET /v1/auth/oauth/{provider}?next=/path[&mode=cookie|token].
func (s *Server) oauthStart(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "provider")
	p, ok := s.oauth.Provider(name)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no sign-in provider "+name+" on this server")
		return
	}
	mode, err := oauth.ParseMode(r.URL.Query().Get("mode"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	to, cookie, err := s.oauth.Begin(p, r.URL.Query().Get("next"), mode)
	if errors.Is(err, oauth.ErrNext) {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, cookie)
	redirect(w, to)
}

// providerError is an error code a provider may send back (OAuth's error=…), passed
// on to the page in the fragment; anything else is passed on as provider_error.
var providerError = regexp.MustCompile(`^[a-z_]{1,64}$`)

// oauthCallback is GET /v1/auth/oauth/{provider}/callback?code=…&state=….
func (s *Server) oauthCallback(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "provider")
	p, ok := s.oauth.Provider(name)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no sign-in provider "+name+" on this server")
		return
	}
	// Whatever happens next, this sign-in's state is spent.
	http.SetCookie(w, s.oauth.ClearCookie(name))
	w.Header().Set("Cache-Control", "no-store")
	var cookie string
	if c, err := r.Cookie(s.oauth.CookieName()); err == nil {
		cookie = c.Value
	}
	q := r.URL.Query()
	next, mode, err := s.oauth.Verify(r.Context(), name, cookie, q.Get("state"))
	if errors.Is(err, oauth.ErrState) {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if e := q.Get("error"); e != "" {
		// The person declined (access_denied) or the provider refused: the page they
		// started from says so.
		if !providerError.MatchString(e) {
			e = "provider_error"
		}
		if mode == oauth.ModeCookie {
			seeOther(w, s.oauth.Return(next, "error="+e))
		} else {
			redirect(w, s.oauth.Return(next, "error="+e))
		}
		return
	}
	code := q.Get("code")
	if code == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "the callback has neither a code nor an error; start the sign-in again")
		return
	}
	id, err := p.Identify(r.Context(), code, s.oauth.RedirectURI(name))
	if err != nil {
		s.log.Warn("oauth: provider did not confirm a sign-in", "provider", name, "err", err)
		writeError(w, http.StatusBadGateway, "bad_gateway", name+" did not confirm the sign-in (details in the server's log); start it again")
		return
	}
	if mode == oauth.ModeCookie {
		// The dashboard's sign-in: a browser session in its cookie, and on to next
		// (a path on this server: CheckNext at the start and again in Verify), with
		// no credential in the URL.
		bs, err := s.accounts.OAuthSessionLogin(r.Context(), name, id, s.sessionClient(r))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.setSessionCookies(w, r, bs.Secret)
		seeOther(w, s.oauth.Return(next, ""))
		return
	}
	sess, err := s.accounts.OAuthLogin(r.Context(), name, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// mode=token: the session rides in the fragment, which browsers never send to a
	// server (nor in a Referer), for the page's script to read.
	fragment := "token=" + url.QueryEscape(sess.Token) + "&expires_at=" + url.QueryEscape(sess.ExpiresAt.UTC().Format(time.RFC3339)) +
		"&team_id=" + url.QueryEscape(sess.TeamID)
	redirect(w, s.oauth.Return(next, fragment))
}

// redirect answers 302 to a URL with no body (http.Redirect would add an HTML one).
func redirect(w http.ResponseWriter, to string) {
	w.Header().Set("Location", to)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// seeOther answers 303 to a URL with no body: the end of a browser-session sign-in
// (the browser GETs the page whatever the request was).
func seeOther(w http.ResponseWriter, to string) {
	w.Header().Set("Location", to)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
}
