package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// OAuthLogin signs in the person a provider identified, and returns a session for
// their default team, as Login does:
//
//   - an identity seen before logs its user in (user.login);
//   - a new identity whose email is a user's joins that user (user.oauth_link), but
//     only when the provider has verified the email: else anyone could make a
//     provider account with someone's address and walk into their Wrenn account;
//   - a new identity with a new email makes a user without a password, with a team
//     of their own, and the identity, in one transaction (user.signup) — unless
//     sign-up is closed, or the provider has not verified the email (whoever
//     later proves that address would be linked into the account its squatter made).
//
// The decision runs in one transaction holding an advisory lock on the identity,
// so concurrent first callbacks of one provider account decide one after another:
// the first makes the user, the others find its identity and log in.
func (s *Service) OAuthLogin(ctx context.Context, provider string, id oauth.Identity) (*Session, error) {
	p, err := s.oauthLogin(ctx, provider, id)
	if err != nil {
		return nil, err
	}
	return s.session(p.UserID, p.TeamID, p.Role)
}

// oauthLogin is OAuthLogin up to who signs in (audited), whom the caller signs in
// with a JWT or a browser session.
func (s *Service) oauthLogin(ctx context.Context, provider string, id oauth.Identity) (*core.Principal, error) {
	if provider == "" || id.Subject == "" {
		return nil, errors.New("oauth login: no provider or subject")
	}
	p, err := s.oauthAccount(ctx, provider, id)
	if errors.Is(err, errEmailTaken) {
		// Someone made an account with this email between the lookup and the insert
		// (a password sign-up: the lock covers only this identity). Decide again: it
		// is now a link.
		p, err = s.oauthAccount(ctx, provider, id)
	}
	if errors.Is(err, errEmailTaken) {
		return nil, fmt.Errorf("%w: an account with this email was being made at the same moment; sign in again", core.ErrConflict)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// oauthAccount finds or makes the user of an identity (see OAuthLogin), audited,
// and returns who they act as.
func (s *Service) oauthAccount(ctx context.Context, provider string, id oauth.Identity) (*core.Principal, error) {
	meta := map[string]any{"provider": provider}
	if id.Login != "" {
		meta["login"] = id.Login
	}
	var p *core.Principal
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		key := db.LockOAuthIdentityParams{Provider: provider, Subject: id.Subject}
		if err := q.LockOAuthIdentity(ctx, key); err != nil {
			return fmt.Errorf("lock %s identity: %w", provider, err)
		}
		known, err := q.GetOAuthIdentity(ctx, db.GetOAuthIdentityParams(key))
		if err == nil {
			if p, err = defaultPrincipal(ctx, q, known.UserID); err != nil {
				return err
			}
			return core.Audit(ctx, q, p, "user.login", "user", p.UserID, meta)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read %s identity: %w", provider, err)
		}
		email, err := normaliseEmail(id.Email)
		if err != nil {
			return fmt.Errorf("%s's email address: %w", provider, err)
		}
		user, err := q.GetUserByEmail(ctx, email)
		switch {
		case err == nil:
			if !id.EmailVerified {
				return fmt.Errorf("%w: an account with the email %s exists, and %s has not verified that the address is yours; sign in with your password instead", core.ErrConflict, email, provider)
			}
			if p, err = defaultPrincipal(ctx, q, user.ID); err != nil {
				return err
			}
			if err := addIdentity(ctx, q, provider, id.Subject, user.ID, email); err != nil {
				return err
			}
			if err := core.Audit(ctx, q, p, "user.oauth_link", "user", p.UserID, meta); err != nil {
				return err
			}
			return core.Audit(ctx, q, p, "user.login", "user", p.UserID, meta)
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("look up %s: %w", email, err)
		case s.signupClosed:
			return fmt.Errorf("%w: sign-up is closed on this server, and no account here has this %s account or its email; ask the server's operator for an account", core.ErrForbidden, provider)
		case !id.EmailVerified:
			return fmt.Errorf("%w: %s has not verified the email address %s; verify it there, then sign in again", core.ErrForbidden, provider, email)
		}
		userID, teamID, err := createAccount(ctx, q, newAccount{email: email, name: oauthName(id), meta: meta})
		if err != nil {
			return err
		}
		uid, _ := core.ParseUUID(userID)
		if err := addIdentity(ctx, q, provider, id.Subject, uid, email); err != nil {
			return err
		}
		p = &core.Principal{UserID: userID, TeamID: teamID, Role: core.Owner}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func addIdentity(ctx context.Context, q *db.Queries, provider, subject string, userID pgtype.UUID, email string) error {
	if _, err := q.CreateOAuthIdentity(ctx, db.CreateOAuthIdentityParams{Provider: provider, Subject: subject, UserID: userID, Email: email}); err != nil {
		return fmt.Errorf("add %s identity: %w", provider, err)
	}
	return nil
}

// defaultPrincipal is the user acting for their default team, read through q.
func defaultPrincipal(ctx context.Context, q *db.Queries, userID pgtype.UUID) (*core.Principal, error) {
	team, err := defaultTeam(ctx, q, userID)
	if err != nil {
		return nil, err
	}
	return &core.Principal{UserID: core.UUIDString(userID), TeamID: core.UUIDString(team.ID), Role: core.Role(team.Role)}, nil
}

// oauthName is a new user's name: the provider's display name, else the handle,
// else none (the team is then named after the email), whichever a name may be.
func oauthName(id oauth.Identity) string {
	for _, n := range []string{id.Name, id.Login} {
		n = strings.TrimSpace(n)
		if n != "" && ident.CheckText("name", n, 100) == nil {
			return n
		}
	}
	return ""
}
