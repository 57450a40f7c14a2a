package cliconfig

import "fmt"

// Overrides are what a command's flags and environment say, each "" when unset.
type Overrides struct {
	Profile, URL, APIKey          string // --profile, --url, --api-key
	EnvProfile, EnvURL, EnvAPIKey string // WRENN_PROFILE, WRENN_URL, WRENN_API_KEY
}

// Resolved is what a command uses, and where each part came from (for whoami and
// for errors that say what to change).
type Resolved struct {
	Name    string  // the profile's name
	Saved   bool    // the profile is in the file
	Profile Profile // URL and credential after overrides
	// NameFrom, URLFrom and CredFrom are "--profile", "WRENN_PROFILE", "config",
	// "default", "--url", "WRENN_URL", "profile", "--api-key", "WRENN_API_KEY" or "".
	NameFrom, URLFrom, CredFrom string
}

// Resolve picks the profile — --profile, else WRENN_PROFILE, else the file's current
// one, else "default" — then lets flags, then variables, override its URL and
// credential: a flag beats a variable, a variable beats the file. An API key given
// by flag or variable replaces the profile's credential, session token included. A
// profile named by flag or variable must exist unless everything it would provide
// is given too (the URL may default).
func Resolve(f *File, o Overrides) (Resolved, error) {
	r := Resolved{Name: DefaultProfile, NameFrom: "default"}
	switch {
	case o.Profile != "":
		r.Name, r.NameFrom = o.Profile, "--profile"
	case o.EnvProfile != "":
		r.Name, r.NameFrom = o.EnvProfile, "WRENN_PROFILE"
	case f.Current != "":
		r.Name, r.NameFrom = f.Current, "config"
	}
	if err := CheckName(r.Name); err != nil {
		return Resolved{}, fmt.Errorf("%s: %w", r.NameFrom, err)
	}
	r.Profile, r.Saved = f.Profiles[r.Name]
	if r.Saved {
		r.URLFrom = "profile"
		if r.Profile.Token != "" || r.Profile.APIKey != "" {
			r.CredFrom = "profile"
		}
	}
	switch {
	case o.URL != "":
		r.Profile.URL, r.URLFrom = o.URL, "--url"
	case o.EnvURL != "":
		r.Profile.URL, r.URLFrom = o.EnvURL, "WRENN_URL"
	case r.Profile.URL == "":
		r.Profile.URL, r.URLFrom = DefaultURL, "default"
	}
	switch {
	case o.APIKey != "":
		r.Profile.APIKey, r.Profile.Token, r.Profile.Email, r.CredFrom = o.APIKey, "", "", "--api-key"
	case o.EnvAPIKey != "":
		r.Profile.APIKey, r.Profile.Token, r.Profile.Email, r.CredFrom = o.EnvAPIKey, "", "", "WRENN_API_KEY"
	}
	if !r.Saved && (r.NameFrom == "--profile" || r.NameFrom == "WRENN_PROFILE") && r.CredFrom == "" {
		return Resolved{}, fmt.Errorf("no profile %q (from %s): 'wrenn login --profile %s' makes it", r.Name, r.NameFrom, r.Name)
	}
	return r, nil
}
