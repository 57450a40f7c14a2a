package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// String is any text, at least min characters when set (0: no minimum).
func String(p *string, min int) Value { return &stringValue{p, min} }

type stringValue struct {
	p   *string
	min int
}

func (v *stringValue) Set(s string) error {
	if len(s) < v.min {
		return fmt.Errorf("want at least %d characters, got %d", v.min, len(s))
	}
	*v.p = s
	return nil
}
func (v *stringValue) String() string { return *v.p }

// OneOf is one of values.
func OneOf(p *string, values ...string) Value { return &oneOfValue{p, values} }

type oneOfValue struct {
	p      *string
	values []string
}

func (v *oneOfValue) Set(s string) error {
	for _, ok := range v.values {
		if s == ok {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(v.values, ", "))
}
func (v *oneOfValue) String() string { return *v.p }

// Bool is true or false (and what strconv.ParseBool accepts: 1, 0, t, f, …).
func Bool(p *bool) Value { return (*boolValue)(p) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

// Int is an integer in min..max.
func Int(p *int, min, max int) Value { return &intValue{p, min, max} }

type intValue struct {
	p        *int
	min, max int
}

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < v.min || n > v.max {
		return fmt.Errorf("want a whole number from %d to %d", v.min, v.max)
	}
	*v.p = n
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(*v.p) }

// Duration is a Go duration (90s, 1m30s, 500ms) of at least min.
func Duration(p *time.Duration, min time.Duration) Value { return &durationValue{p, min} }

type durationValue struct {
	p   *time.Duration
	min time.Duration
}

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d < v.min {
		return fmt.Errorf("want a duration of at least %v (like 90s or 1m30s)", v.min)
	}
	*v.p = d
	return nil
}
func (v *durationValue) String() string { return v.p.String() }

// Addr is a listen or dial address host:port (the host may be empty: all interfaces).
func Addr(p *string) Value { return &addrValue{p} }

type addrValue struct{ p *string }

func (v *addrValue) Set(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port, like :8080 or 10.0.0.2:50051")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("want a port number from 0 to 65535 after the colon")
	}
	*v.p = s
	return nil
}
func (v *addrValue) String() string { return *v.p }

// URL is an absolute URL with one of schemes.
func URL(p *string, schemes ...string) Value { return &urlValue{p, schemes} }

type urlValue struct {
	p       *string
	schemes []string
}

func (v *urlValue) Set(s string) error {
	u, err := url.Parse(s)
	if err == nil {
		for _, sc := range v.schemes {
			if u.Scheme == sc && (u.Host != "" || sc == "unix") {
				*v.p = s
				return nil
			}
		}
	}
	return fmt.Errorf("want a URL starting %s://", strings.Join(v.schemes, ":// or "))
}
func (v *urlValue) String() string { return *v.p }

// BaseURL is the absolute http(s) URL of a site's root: a host (and port), no user,
// path (but "/"), query or fragment, so that paths can be appended to it.
func BaseURL(p *string) Value { return &baseURLValue{p} }

type baseURLValue struct{ p *string }

func (v *baseURLValue) Set(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || strings.ContainsAny(s, "?#") {
		return errors.New("want an http or https URL of a host, like https://wrenn.example.com (no path, query or fragment)")
	}
	*v.p = s
	return nil
}
func (v *baseURLValue) String() string { return *v.p }

// Domain is a bare DNS name (sandbox ports are served at {port}-{id}.{domain}).
func Domain(p *string) Value { return &domainValue{p} }

type domainValue struct{ p *string }

var domainRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)

func (v *domainValue) Set(s string) error {
	if !domainRE.MatchString(s) {
		return errors.New("want a bare domain name like wrenn.example.com (no scheme, port or path)")
	}
	*v.p = s
	return nil
}
func (v *domainValue) String() string { return *v.p }

// Level is a log level: debug, info, warn or error.
func Level(p *slog.Level) Value { return (*levelValue)(p) }

type levelValue slog.Level

func (v *levelValue) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		*v = levelValue(slog.LevelDebug)
	case "info":
		*v = levelValue(slog.LevelInfo)
	case "warn", "warning":
		*v = levelValue(slog.LevelWarn)
	case "error":
		*v = levelValue(slog.LevelError)
	default:
		return errors.New("want debug, info, warn or error")
	}
	return nil
}
func (v *levelValue) String() string { return strings.ToLower(slog.Level(*v).String()) }

// keyValuePassword finds password=… in a libpq key/value connection string.
var keyValuePassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL hides the password of a URL (postgres://u:pw@h/db, redis://:pw@h/0) or of a
// key/value connection string (host=h password=pw), keeping the rest for the log.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "REDACTED")
			}
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "REDACTED")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if strings.Contains(s, "://") {
		return "REDACTED" // an unparseable URL may hold a password anywhere
	}
	return keyValuePassword.ReplaceAllString(s, "${1}REDACTED")
}

// Prefixes is a comma-separated list of CIDR blocks or single IP addresses.
func Prefixes(p *[]netip.Prefix) Value { return &prefixesValue{p} }

type prefixesValue struct{ p *[]netip.Prefix }

func (v *prefixesValue) Set(s string) error {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if ip, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		pf, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("%q: want IP addresses or CIDR blocks separated by commas, like 127.0.0.1,10.0.0.0/8", f)
		}
		out = append(out, pf.Masked())
	}
	*v.p = out
	return nil
}

func (v *prefixesValue) String() string {
	s := make([]string, len(*v.p))
	for i, p := range *v.p {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// CgroupPath is a cgroup below each hierarchy's root, like "wrenn" or "system.slice/wrenn":
// segments of [A-Za-z0-9._-] without "." or "..", separated by "/"; empty is allowed.
func CgroupPath(p *string) Value { return (*cgroupPathValue)(p) }

type cgroupPathValue string

func (v *cgroupPathValue) Set(s string) error {
	s = strings.Trim(s, "/")
	if s != "" {
		for _, part := range strings.Split(s, "/") {
			if part == "" || part == "." || part == ".." || strings.ContainsFunc(part, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
			}) {
				return fmt.Errorf("want segments of letters, digits, '.', '_' and '-' separated by '/', got %q", s)
			}
		}
	}
	*v = cgroupPathValue(s)
	return nil
}
func (v *cgroupPathValue) String() string { return string(*v) }
