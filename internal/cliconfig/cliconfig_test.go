package cliconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPath(t *testing.T) {
	if p, _ := Path(env(map[string]string{"XDG_CONFIG_HOME": "/x", "HOME": "/h"})); p != "/x/wrenn/config" {
		t.Errorf("with XDG_CONFIG_HOME: %s", p)
	}
	if p, _ := Path(env(map[string]string{"HOME": "/h"})); p != "/h/.config/wrenn/config" {
		t.Errorf("with HOME: %s", p)
	}
}

// The file round-trips, is private (0600 in a 0700 directory) and an unreadable one
// is an error that says what to do.
func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wrenn", "config")
	f, err := Load(path)
	if err != nil || len(f.Profiles) != 0 {
		t.Fatalf("missing file: %+v %v", f, err)
	}
	f.Put("local", Profile{URL: "http://127.0.0.1:8080", APIKey: "wrn_k"})
	f.Put("prod", Profile{URL: "https://w.example", Token: "tok", Email: "a@b"})
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", p, st.Mode().Perm(), want, err)
		}
	}
	g, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if g.Current != "prod" || g.Profiles["local"].APIKey != "wrn_k" || g.Profiles["prod"].Email != "a@b" || strings.Join(g.Names(), ",") != "local,prod" {
		t.Errorf("loaded %+v", g)
	}
	if !g.Remove("prod") || g.Current != "" || g.Remove("prod") {
		t.Errorf("remove: %+v", g)
	}
	if err := os.WriteFile(path, []byte("profiles: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "wrenn login") {
		t.Errorf("a broken file: %v", err)
	}
	if err := os.WriteFile(path, []byte("profiles:\n  ../evil:\n    url: http://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Error("a profile named ../evil was accepted")
	}
}

// A login saved by the CLI before profiles (config.json) becomes the default profile.
func TestLegacyLogin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wrenn")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"url":"http://old:8080","token":"oldtok"}`), 0o600)
	f, err := Load(filepath.Join(dir, "config"))
	if err != nil || f.Profiles[DefaultProfile].Token != "oldtok" || f.Profiles[DefaultProfile].URL != "http://old:8080" {
		t.Errorf("legacy: %+v %v", f, err)
	}
}

// Which profile, URL and credential a command uses: --profile beats WRENN_PROFILE
// beats the current profile beats "default"; a flag beats a variable beats the
// profile; an API key override replaces the profile's session.
func TestResolvePrecedence(t *testing.T) {
	f := &File{Current: "local", Profiles: map[string]Profile{
		"local": {URL: "http://127.0.0.1:8080", APIKey: "wrn_local"},
		"prod":  {URL: "https://prod", Token: "tok", Email: "ann@x"},
		"bare":  {URL: "https://bare"},
	}}
	for _, c := range []struct {
		name            string
		o               Overrides
		profile, url    string
		key, token      string
		nameFrom, urlFr string
		credFrom        string
		err             string
	}{
		{name: "current", o: Overrides{}, profile: "local", url: "http://127.0.0.1:8080", key: "wrn_local", nameFrom: "config", urlFr: "profile", credFrom: "profile"},
		{name: "env profile", o: Overrides{EnvProfile: "prod"}, profile: "prod", url: "https://prod", token: "tok", nameFrom: "WRENN_PROFILE", urlFr: "profile", credFrom: "profile"},
		{name: "flag beats env", o: Overrides{Profile: "local", EnvProfile: "prod"}, profile: "local", url: "http://127.0.0.1:8080", key: "wrn_local", nameFrom: "--profile", urlFr: "profile", credFrom: "profile"},
		{name: "env url", o: Overrides{EnvProfile: "prod", EnvURL: "https://other"}, profile: "prod", url: "https://other", token: "tok", nameFrom: "WRENN_PROFILE", urlFr: "WRENN_URL", credFrom: "profile"},
		{name: "flag url beats env url", o: Overrides{URL: "https://flag", EnvURL: "https://env"}, profile: "local", url: "https://flag", key: "wrn_local", nameFrom: "config", urlFr: "--url", credFrom: "profile"},
		{name: "env key replaces session", o: Overrides{EnvProfile: "prod", EnvAPIKey: "wrn_env"}, profile: "prod", url: "https://prod", key: "wrn_env", nameFrom: "WRENN_PROFILE", urlFr: "profile", credFrom: "WRENN_API_KEY"},
		{name: "flag key beats env key", o: Overrides{APIKey: "wrn_flag", EnvAPIKey: "wrn_env"}, profile: "local", url: "http://127.0.0.1:8080", key: "wrn_flag", nameFrom: "config", urlFr: "profile", credFrom: "--api-key"},
		{name: "no credential", o: Overrides{Profile: "bare"}, profile: "bare", url: "https://bare", nameFrom: "--profile", urlFr: "profile"},
		{name: "unknown profile", o: Overrides{Profile: "nope"}, err: `no profile "nope" (from --profile)`},
		{name: "unknown profile, env key given", o: Overrides{EnvProfile: "ci", EnvAPIKey: "wrn_ci", EnvURL: "https://ci"}, profile: "ci", url: "https://ci", key: "wrn_ci", nameFrom: "WRENN_PROFILE", urlFr: "WRENN_URL", credFrom: "WRENN_API_KEY"},
		{name: "bad name", o: Overrides{EnvProfile: "a/b"}, err: "WRENN_PROFILE: profile name"},
	} {
		r, err := Resolve(f, c.o)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if r.Name != c.profile || r.Profile.URL != c.url || r.Profile.APIKey != c.key || r.Profile.Token != c.token ||
			r.NameFrom != c.nameFrom || r.URLFrom != c.urlFr || r.CredFrom != c.credFrom {
			t.Errorf("%s: got %+v", c.name, r)
		}
	}
	// Nothing saved at all: the default profile, make up's URL, no credential.
	r, err := Resolve(&File{}, Overrides{})
	if err != nil || r.Name != DefaultProfile || r.Profile.URL != DefaultURL || r.Saved {
		t.Errorf("empty file: %+v %v", r, err)
	}
}
