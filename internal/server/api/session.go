package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Browser sessions: the dashboard (served from this origin) signs in with
// POST /v1/auth/session and from then on is authenticated by its session cookie,
// never holding a token its script could leak. Because a browser attaches cookies
// to requests other sites make, every cookie-authenticated request that changes
// something must prove it came from the dashboard: an X-CSRF-Token header equal to
// the wrenn_csrf cookie and bound to the session (auth.CSRFToken), and no foreign
// Origin. Sandboxes' pages are same-site (subdomains of WRENN_DOMAIN), so SameSite
// alone would not stop them; the Origin check and the bound token do. Bearer
// tokens and API keys need none of this: browsers never attach them on their own.

// sessionUser is the account part of a browser session's answer.
type sessionUser struct {
	ID      string `json:"id"`
	Email   string `json:"email"`
	Name    string `json:"name"`
	IsAdmin bool   `json:"is_admin"`
}

// cookieSessionResponse is what the browser-session routes answer: who is signed
// in, for which team, and the CSRF token to send as X-CSRF-Token.
type cookieSessionResponse struct {
	User      sessionUser `json:"user"`
	TeamID    string      `json:"team_id"`
	Role      string      `json:"role"`
	CSRFToken string      `json:"csrf_token"`
}

func cookieSession(bs *accounts.BrowserSession, secret string) cookieSessionResponse {
	return cookieSessionResponse{User: sessionUser{ID: bs.UserID, Email: bs.Email, Name: bs.Name, IsAdmin: bs.Admin},
		TeamID: bs.TeamID, Role: string(bs.Role), CSRFToken: auth.CSRFToken(secret)}
}

// secure reports whether cookies answering r are Secure (auth.SecureCookies).
func (s *Server) secure(r *http.Request) bool { return auth.SecureCookies(r, s.publicHTTPS) }

// sessionSecret is the session cookie r carries under this server's name for it
// (only the __Host- one over https: a plain-named one may have been planted by a
// sibling subdomain).
func (s *Server) sessionSecret(r *http.Request) string {
	c, err := r.Cookie(auth.SessionCookieName(s.secure(r)))
	if err != nil {
		return ""
	}
	return c.Value
}

// setSessionCookies starts a browser session in the browser: the HttpOnly session
// cookie (Lax: it comes along when a person follows a link to the dashboard) and
// the CSRF cookie the dashboard's script reads (Strict: never sent from elsewhere).
// Both last as long as the session may; the server ends it sooner when idle.
func (s *Server) setSessionCookies(w http.ResponseWriter, r *http.Request, secret string) {
	s.sessionCookies(w, r, secret, auth.CSRFToken(secret), int(auth.SessionTTL.Seconds()))
}

// clearSessionCookies removes both cookies (sign-out, a dead session).
func (s *Server) clearSessionCookies(w http.ResponseWriter, r *http.Request) {
	s.sessionCookies(w, r, "", "", -1)
}

func (s *Server) sessionCookies(w http.ResponseWriter, r *http.Request, secret, csrf string, maxAge int) {
	secure := s.secure(r)
	http.SetCookie(w, &http.Cookie{Name: auth.SessionCookieName(secure), Value: secret, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
	http.SetCookie(w, &http.Cookie{Name: auth.CSRFCookie, Value: csrf, Path: "/", MaxAge: maxAge,
		Secure: secure, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
}

// sameOrigin reports whether r's Origin header names this server: the public URL's
// origin, or the host r was sent to (over https when r came over TLS or the public
// URL is https). An absent, "null" or unparsable Origin is not this server.
func (s *Server) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if s.publicOrigin != "" && strings.EqualFold(origin, s.publicOrigin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" || !strings.EqualFold(u.Host, r.Host) {
		return false
	}
	if s.secure(r) {
		return u.Scheme == "https"
	}
	return u.Scheme == "http" || u.Scheme == "https"
}

// foreignOrigin reports whether r says it comes from a page of another origin.
func (s *Server) foreignOrigin(r *http.Request) bool {
	return r.Header.Get("Origin") != "" && !s.sameOrigin(r)
}

// safeMethod: methods that change nothing, which need no CSRF token.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func csrfError(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusForbidden, "csrf", msg)
}

// fromCookie authenticates r by its session cookie (secret): the cross-site
// checks first (see the top of this file), then the session itself. A dead session
// is answered 401 with both cookies cleared, so the dashboard goes to its sign-in.
// It answers the request itself when it returns false.
func (s *Server) fromCookie(w http.ResponseWriter, r *http.Request, secret string, anyTeam bool) (*core.Principal, bool) {
	if !safeMethod(r.Method) {
		if s.foreignOrigin(r) {
			csrfError(w, "refused: a cookie-authenticated request from another origin ("+r.Header.Get("Origin")+")")
			return nil, false
		}
		if !s.checkCSRF(r, secret) {
			csrfError(w, "send "+auth.CSRFHeader+": the csrf_token of this sign-in (also in the "+auth.CSRFCookie+" cookie); a request made with the session cookie must carry it")
			return nil, false
		}
	}
	// A browser sends Origin with every WebSocket handshake and applies no
	// same-origin policy to WebSockets: another site's page could otherwise open the
	// exec stream with the victim's cookie (cross-site WebSocket hijacking).
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && !s.sameOrigin(r) {
		csrfError(w, "refused: a WebSocket with the session cookie must come from this server's own pages (Origin "+r.Header.Get("Origin")+")")
		return nil, false
	}
	p, err := s.accounts.FromSession(r.Context(), secret, anyTeam)
	if err != nil {
		if errors.Is(err, core.ErrUnauthorized) {
			s.clearSessionCookies(w, r)
		}
		s.fail(w, r, err)
		return nil, false
	}
	return p, true
}

// checkCSRF: the X-CSRF-Token header equals a wrenn_csrf cookie (double submit:
// another site can neither read nor set this host's cookie... except a sibling
// subdomain, which can plant one) and is this session's token (which no other site
// can compute: that is what defeats a planted cookie). Any of several wrenn_csrf
// cookies may match, so a planted one does not lock the dashboard out.
func (s *Server) checkCSRF(r *http.Request, secret string) bool {
	token := r.Header.Get(auth.CSRFHeader)
	if token == "" || !auth.CheckCSRF(secret, token) {
		return false
	}
	for _, c := range r.CookiesNamed(auth.CSRFCookie) {
		if subtle.ConstantTimeCompare([]byte(c.Value), []byte(token)) == 1 {
			return true
		}
	}
	return false
}

// sessionClient is where a sign-in comes from, kept with its session.
func (s *Server) sessionClient(r *http.Request) accounts.Client {
	return accounts.Client{Addr: s.clientAddr(r), UserAgent: r.UserAgent()}
}

// refuseForeignSignIn refuses a sign-in posted by another site's page (login CSRF:
// it would sign the victim's browser into the attacker's account).
func (s *Server) refuseForeignSignIn(w http.ResponseWriter, r *http.Request) bool {
	if s.foreignOrigin(r) {
		csrfError(w, "refused: a sign-in from another origin ("+r.Header.Get("Origin")+")")
		return true
	}
	return false
}

// sessionSignIn is POST /v1/auth/session: Login for a browser.
func (s *Server) sessionSignIn(w http.ResponseWriter, r *http.Request) {
	if s.refuseForeignSignIn(w, r) {
		return
	}
	var req loginRequest
	if !decode(w, r, &req) {
		return
	}
	bs, err := s.accounts.SessionLogin(r.Context(), req.Email, req.Password, s.sessionClient(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setSessionCookies(w, r, bs.Secret)
	writeJSON(w, http.StatusOK, cookieSession(bs, bs.Secret))
}

// sessionSignup is POST /v1/auth/session/signup: Signup for a browser.
func (s *Server) sessionSignup(w http.ResponseWriter, r *http.Request) {
	if s.refuseForeignSignIn(w, r) {
		return
	}
	var req signupRequest
	if !decode(w, r, &req) {
		return
	}
	bs, err := s.accounts.SessionSignup(r.Context(), req.Email, req.Name, req.Password, s.sessionClient(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setSessionCookies(w, r, bs.Secret)
	writeJSON(w, http.StatusCreated, cookieSession(bs, bs.Secret))
}

// getSession is GET /v1/auth/session: the browser's session, with its CSRF token
// (for a dashboard page loaded afresh).
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	bs, err := s.accounts.SessionOf(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, cookieSession(bs, s.sessionSecret(r)))
}

// signOut is DELETE /v1/auth/session: the session is revoked and its cookies
// cleared.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if err := s.accounts.SignOut(r.Context(), principal(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.clearSessionCookies(w, r)
	w.WriteHeader(http.StatusNoContent)
}
