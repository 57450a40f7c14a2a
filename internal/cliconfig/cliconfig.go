// Package cliconfig is the wrenn CLI's saved logins: named profiles, each a control
// plane URL and one credential (a user's session token or a team API key), kept in
// one file readable only by its owner, and the rule that picks the profile and the
// values a command uses.
package cliconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/wrennhq/wrenn/internal/atomicfile"
)

// DefaultURL is the control plane a profile without one talks to: `make up`'s.
const DefaultURL = "http://127.0.0.1:8080"

// DefaultProfile is the profile used when nothing names one and the file has no
// current profile.
const DefaultProfile = "default"

// Profile is one saved login.
type Profile struct {
	URL string `yaml:"url"`
	// Token is a user's session (email/password or GitHub login); APIKey a team's key.
	// A profile has one of them.
	Token  string `yaml:"token,omitempty"`
	APIKey string `yaml:"api_key,omitempty"`
	// Email is who logged in (for whoami without a request); empty for an API key.
	Email string `yaml:"email,omitempty"`
}

// File is the config file's content.
type File struct {
	// Current is the profile used when neither --profile nor WRENN_PROFILE names one;
	// `wrenn login` makes the profile it writes current.
	Current  string             `yaml:"current,omitempty"`
	Profiles map[string]Profile `yaml:"profiles,omitempty"`
}

// Path is where the file lives: $XDG_CONFIG_HOME/wrenn/config, else
// ~/.config/wrenn/config.
func Path(getenv func(string) string) (string, error) {
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("find the config directory: set XDG_CONFIG_HOME or HOME: %w", err)
			}
			home = h
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "wrenn", "config"), nil
}

// legacyConfig is what logins before profiles saved, in config.json beside the file.
type legacyConfig struct {
	URL    string `yaml:"url"`
	Token  string `yaml:"token"`
	APIKey string `yaml:"api_key"`
}

// Load reads the file at path. A missing file is an empty one, or — once — the
// login an older CLI saved in config.json, as the default profile.
func Load(path string) (*File, error) {
	f := &File{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return loadLegacy(filepath.Join(filepath.Dir(path), "config.json"))
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := yaml.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("read %s: %w (fix or delete it, then 'wrenn login' again)", path, err)
	}
	for name := range f.Profiles {
		if err := CheckName(name); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return f, nil
}

func loadLegacy(path string) (*File, error) {
	f := &File{}
	b, err := os.ReadFile(path)
	if err != nil {
		return f, nil // nothing saved, or nothing readable: no profiles
	}
	var old legacyConfig
	if yaml.Unmarshal(b, &old) != nil || (old.Token == "" && old.APIKey == "") {
		return f, nil
	}
	f.Profiles = map[string]Profile{DefaultProfile: {URL: old.URL, Token: old.Token, APIKey: old.APIKey}}
	return f, nil
}

// Save writes the file at path, mode 0600 in a 0700 directory: it holds credentials.
func (f *File) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	var b bytes.Buffer
	b.WriteString("# wrenn CLI logins ('wrenn login', 'wrenn logout'); credentials: keep this file private.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return atomicfile.Write(path, b.Bytes(), 0o600)
}

// Names lists the profiles, sorted.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Profiles))
	for n := range f.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Put stores p under name and makes it current.
func (f *File) Put(name string, p Profile) {
	if f.Profiles == nil {
		f.Profiles = map[string]Profile{}
	}
	f.Profiles[name] = p
	f.Current = name
}

// Remove forgets a profile; the current one becomes none.
func (f *File) Remove(name string) bool {
	if _, ok := f.Profiles[name]; !ok {
		return false
	}
	delete(f.Profiles, name)
	if f.Current == name {
		f.Current = ""
	}
	return true
}

var profileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckName refuses a profile name that is not 1–63 letters, digits, '.', '_' or
// '-' (starting with a letter or digit): names are typed in flags and variables.
func CheckName(name string) error {
	if !profileName.MatchString(name) {
		return fmt.Errorf("profile name %q: use 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}
