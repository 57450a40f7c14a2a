// Package scheduler picks the host a new sandbox runs on.
//
// It is pure: the caller loads the candidate hosts (with their reserved usage)
// and passes them in; nothing here touches the database or the network.
package scheduler

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
)

// HostStatus is a host's status as the control plane records it (hosts.status; the
// table's CHECK constraint lists the same names). Defined here, beside the only rule
// that depends on it: just online hosts take new sandboxes.
type HostStatus string

// Host statuses.
const (
	// StatusPending: created, its agent has not registered yet.
	StatusPending HostStatus = "pending"
	// StatusOnline: registered and heartbeating; the only status that takes sandboxes.
	StatusOnline HostStatus = "online"
	// StatusUnreachable: silent for too long (or presenting another certificate); its
	// sandboxes are missing until it is back.
	StatusUnreachable HostStatus = "unreachable"
	// StatusDraining: keeps its sandboxes, takes no new ones.
	StatusDraining HostStatus = "draining"
	// StatusOffline: deleted.
	StatusOffline HostStatus = "offline"
)

// Host is a candidate host as the control plane knows it.
type Host struct {
	ID       string     // uuid
	TeamID   string     // "" = platform host; else the BYOC team that owns it
	Status   HostStatus // only online hosts take sandboxes
	VCPUs    int        // capacity reported by the agent (0 = unknown: treat as unlimited)
	MemoryMB int        // capacity (0 = unknown: unlimited)

	UsedVCPUs, UsedMemoryMB int // reserved by the sandboxes placed there and not stopped
	Sandboxes               int // live sandboxes placed there

	Tags []string // labels an operator gave the host (e.g. "gpu", "eu-west")
}

// Request is what is being placed.
type Request struct {
	TeamID   string
	BYOC     bool // the team runs on its own hosts only
	VCPUs    int
	MemoryMB int
	// OnlyHosts, when non-nil, restricts placement to these host ids (a snapshot
	// template exists only on the hosts that hold its files).
	OnlyHosts map[string]bool
	// RequiredTags restricts placement to hosts that carry every one of these tags.
	RequiredTags []string
}

var tagPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidTag checks a host tag's spelling (the host_tags table checks the same).
func ValidTag(tag string) error {
	if !tagPattern.MatchString(tag) {
		return errors.New("tags are 1..63 of a-z 0-9 . _ - (starting with a letter or digit)")
	}
	return nil
}

// hasTags reports whether h carries every tag in want.
func hasTags(h Host, want []string) bool {
	for _, t := range want {
		if !slices.Contains(h.Tags, t) {
			return false
		}
	}
	return true
}

// Scheduler picks a host. Pick returns a *NoHostError when no host can take
// the request.
type Scheduler interface {
	Pick(req Request, hosts []Host) (Host, error)
	Name() string
}

// ErrNoHost matches every *NoHostError with errors.Is.
var ErrNoHost = errors.New("no host available")

// NoHostError says why no host can take a sandbox.
type NoHostError struct{ Reason string }

func (e *NoHostError) Error() string { return "no host can take this sandbox: " + e.Reason }

// Is reports whether target is ErrNoHost.
func (e *NoHostError) Is(target error) bool { return target == ErrNoHost }

// Scheduler names accepted by New.
const (
	RoundRobin  = "round-robin"
	LeastLoaded = "least-loaded"
)

// Names lists the valid scheduler names.
func Names() []string { return []string{RoundRobin, LeastLoaded} }

// New returns the scheduler with the given name.
func New(name string) (Scheduler, error) {
	switch name {
	case RoundRobin:
		return &roundRobin{}, nil
	case LeastLoaded:
		return leastLoaded{}, nil
	}
	return nil, fmt.Errorf("unknown scheduler %q (valid: %s)", name, strings.Join(Names(), ", "))
}

// inPool reports whether h belongs to the pool the request may use (the team's
// own hosts for a BYOC team, platform hosts otherwise) and, if the request
// names hosts, is one of them. Status and capacity are not considered.
func inPool(req Request, h Host) bool {
	if req.BYOC {
		if req.TeamID == "" || h.TeamID != req.TeamID {
			return false
		}
	} else if h.TeamID != "" {
		return false
	}
	return req.OnlyHosts == nil || req.OnlyHosts[h.ID]
}

// fits reports whether the request fits h's capacity on top of what is already
// reserved there (if used were 0). A capacity of 0 is unknown, i.e. unlimited.
func fits(req Request, h Host, usedVCPUs, usedMemoryMB int) bool {
	return (h.VCPUs == 0 || usedVCPUs+req.VCPUs <= h.VCPUs) &&
		(h.MemoryMB == 0 || usedMemoryMB+req.MemoryMB <= h.MemoryMB)
}

// Eligible returns the hosts that can take req, sorted by ID. It does not
// modify hosts.
func Eligible(req Request, hosts []Host) []Host {
	var out []Host
	for _, h := range hosts {
		if inPool(req, h) && hasTags(h, req.RequiredTags) && h.Status == StatusOnline && fits(req, h, h.UsedVCPUs, h.UsedMemoryMB) {
			out = append(out, h)
		}
	}
	slices.SortStableFunc(out, func(a, b Host) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// noHost explains why Eligible(req, hosts) is empty.
func noHost(req Request, hosts []Host) *NoHostError {
	// Each count narrows the previous one: in the pool, carrying the tags, online,
	// and (among those) too small even when empty.
	var pool, tagged, online, tooSmall int
	for _, h := range hosts {
		if !inPool(req, h) {
			continue
		}
		pool++
		if !hasTags(h, req.RequiredTags) {
			continue
		}
		tagged++
		if h.Status != StatusOnline {
			continue
		}
		online++
		if !fits(req, h, 0, 0) {
			tooSmall++
		}
	}

	scope := "platform hosts"
	switch {
	case req.OnlyHosts != nil:
		scope = fmt.Sprintf("the template's hosts (%d)", len(req.OnlyHosts))
	case req.BYOC:
		scope = "the team's own (BYOC) hosts"
	}
	tags := strings.Join(req.RequiredTags, ", ")
	need := fmt.Sprintf("needs %d vCPUs, %d MiB", req.VCPUs, req.MemoryMB)

	var reason string
	switch {
	case req.OnlyHosts != nil && len(req.OnlyHosts) == 0:
		reason = "the template's files are on no host"
	case pool == 0 && req.OnlyHosts != nil:
		if req.BYOC {
			reason = scope + " are not among the team's own (BYOC) hosts"
		} else {
			reason = scope + " are not platform hosts"
		}
	case pool == 0 && req.BYOC:
		reason = "the team has no hosts of its own (BYOC)"
	case pool == 0:
		reason = "no platform host is registered"
	case tagged == 0:
		reason = fmt.Sprintf("none of %s has the tags %s", scope, tags)
	case len(req.RequiredTags) > 0:
		// From here on the scope is the hosts carrying the tags.
		scope = fmt.Sprintf("%s tagged %s", scope, tags)
		fallthrough
	default:
		reason = capacityReason(req, scope, need, tagged, online, tooSmall)
	}
	return &NoHostError{Reason: reason}
}

// capacityReason explains an empty placement among candidates hosts that are in the
// pool and carry the tags: offline, too small or full.
func capacityReason(req Request, scope, need string, candidates, online, tooSmall int) string {
	switch {
	case online == 0 && req.OnlyHosts == nil && !req.BYOC && len(req.RequiredTags) == 0:
		return "no online platform host"
	case online == 0:
		return scope + " are all offline"
	case tooSmall == online:
		return fmt.Sprintf("no online host among %s is large enough (%s)", scope, need)
	case online == candidates:
		return fmt.Sprintf("every eligible host is full (%s)", need)
	}
	return fmt.Sprintf("%s are offline (%d) or full (%d) (%s)", scope, candidates-online, online, need)
}

// roundRobin cycles through the eligible hosts sorted by ID. Safe for
// concurrent use.
type roundRobin struct{ next atomic.Uint64 }

func (*roundRobin) Name() string { return RoundRobin }

func (r *roundRobin) Pick(req Request, hosts []Host) (Host, error) {
	eligible := Eligible(req, hosts)
	if len(eligible) == 0 {
		return Host{}, noHost(req, hosts)
	}
	n := r.next.Add(1) - 1
	return eligible[n%uint64(len(eligible))], nil
}

// leastLoaded picks the host whose load, after adding the request, is lowest.
// Load is the larger of the vCPU and memory fractions over the dimensions the
// host reports. Hosts that report capacity rank before those that do not (only
// for them is the fit known); the latter are compared by Sandboxes. Ties go to
// fewer Sandboxes, then the lower ID.
type leastLoaded struct{}

func (leastLoaded) Name() string { return LeastLoaded }

func (leastLoaded) Pick(req Request, hosts []Host) (Host, error) {
	eligible := Eligible(req, hosts)
	if len(eligible) == 0 {
		return Host{}, noHost(req, hosts)
	}
	best := eligible[0]
	for _, h := range eligible[1:] {
		if compareLoad(req, h, best) < 0 {
			best = h
		}
	}
	return best, nil
}

// load returns h's load after adding req, and whether h reports any capacity.
func load(req Request, h Host) (float64, bool) {
	var l float64
	known := false
	if h.VCPUs > 0 {
		l, known = max(l, float64(h.UsedVCPUs+req.VCPUs)/float64(h.VCPUs)), true
	}
	if h.MemoryMB > 0 {
		l, known = max(l, float64(h.UsedMemoryMB+req.MemoryMB)/float64(h.MemoryMB)), true
	}
	return l, known
}

// compareLoad orders a before b (negative) when a is the better place for req.
func compareLoad(req Request, a, b Host) int {
	la, ka := load(req, a)
	lb, kb := load(req, b)
	switch {
	case ka != kb:
		if ka {
			return -1
		}
		return 1
	case la < lb:
		return -1
	case la > lb:
		return 1
	case a.Sandboxes != b.Sandboxes:
		return a.Sandboxes - b.Sandboxes
	}
	return strings.Compare(a.ID, b.ID)
}
