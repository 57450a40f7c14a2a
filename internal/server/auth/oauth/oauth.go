// Package oauth signs users in through outside identity providers (GitHub first): a
// registry of providers, each one file implementing Provider, and the state of a
// sign-in in flight — an HMAC-signed, short-lived cookie that binds the provider's
// callback to the browser that started the sign-in, carrying a nonce that is good
// for one callback only.
//
// It decides nothing about accounts: a provider turns a callback's code into an
// Identity, and package accounts maps that identity to a user.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
)

// Identity is who a provider says signed in.
type Identity struct {
	// Subject is the provider's stable id of the account (GitHub's numeric user id,
	// never the login, which its owner can rename and someone else then take).
	Subject string
	// Email is the account's address; EmailVerified says the provider checked that
	// the person controls it (only then may it join an existing Wrenn account).
	Email         string
	EmailVerified bool
	Name          string // display name, may be empty
	Login         string // the provider's handle, may be empty
}

// Provider is one identity provider. A new provider is one file implementing it.
type Provider interface {
	// Name is the provider's name in routes and in the database: lowercase letters,
	// digits, '_' and '-'.
	Name() string
	// AuthURL is where the browser goes to sign in: the provider sends it back to
	// redirectURI with a code and state.
	AuthURL(state, redirectURI string) string
	// Identify exchanges a callback's code for the identity that signed in.
	// redirectURI is the one AuthURL was given (providers check they match).
	Identify(ctx context.Context, code, redirectURI string) (Identity, error)
}

// Registry is the configured providers by name.
type Registry map[string]Provider

var providerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// NewRegistry indexes providers by name; names must be valid and distinct.
func NewRegistry(providers ...Provider) (Registry, error) {
	r := Registry{}
	for _, p := range providers {
		if p == nil {
			return nil, errors.New("oauth: nil provider")
		}
		name := p.Name()
		if !providerName.MatchString(name) {
			return nil, fmt.Errorf("oauth: provider name %q: want lowercase letters, digits, '_' and '-'", name)
		}
		if _, dup := r[name]; dup {
			return nil, fmt.Errorf("oauth: provider %q configured twice", name)
		}
		r[name] = p
	}
	return r, nil
}

// Get is the provider called name; a nil Registry has none.
func (r Registry) Get(name string) (Provider, bool) {
	p, ok := r[name]
	return p, ok
}
