package scheduler

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

const (
	teamA = "team-a"
	teamB = "team-b"
)

func online(id, team string) Host {
	return Host{ID: id, TeamID: team, Status: StatusOnline, VCPUs: 8, MemoryMB: 8192}
}

func withStatus(h Host, status HostStatus) Host { h.Status = status; return h }

func withTags(h Host, tags ...string) Host { h.Tags = tags; return h }

func withUsed(h Host, vcpus, mem, sandboxes int) Host {
	h.UsedVCPUs, h.UsedMemoryMB, h.Sandboxes = vcpus, mem, sandboxes
	return h
}

func ids(hosts []Host) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.ID
	}
	return out
}

func set(ids ...string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// mixed is a fleet of platform hosts and two teams' BYOC hosts, unsorted.
var mixed = []Host{
	online("p2", ""),
	online("a1", teamA),
	online("p1", ""),
	online("b1", teamB),
	withStatus(online("p3", ""), "unreachable"),
	withStatus(online("a2", teamA), "draining"),
	withStatus(online("p4", ""), "pending"),
	withStatus(online("p5", ""), "offline"),
	online("a3", teamA),
}

func TestEligible(t *testing.T) {
	small := Request{TeamID: teamA, VCPUs: 1, MemoryMB: 512}
	tests := []struct {
		name  string
		req   Request
		hosts []Host
		want  []string
	}{
		{"normal team: only online platform hosts, sorted",
			small, mixed, []string{"p1", "p2"}},
		{"normal team never on its own or another team's BYOC host",
			Request{TeamID: teamB, VCPUs: 1}, mixed, []string{"p1", "p2"}},
		{"BYOC team: only its own online hosts",
			Request{TeamID: teamA, BYOC: true, VCPUs: 1}, mixed, []string{"a1", "a3"}},
		{"BYOC team never on another team's hosts",
			Request{TeamID: teamB, BYOC: true}, mixed, []string{"b1"}},
		{"BYOC team with empty team id takes nothing",
			Request{BYOC: true}, mixed, nil},
		{"BYOC team never on platform hosts even when it has none",
			Request{TeamID: "team-c", BYOC: true}, mixed, nil},
		{"OnlyHosts restricts",
			Request{TeamID: teamA, OnlyHosts: set("p2", "p3")}, mixed, []string{"p2"}},
		{"OnlyHosts cannot widen the pool",
			Request{TeamID: teamA, OnlyHosts: set("a1", "b1")}, mixed, nil},
		{"OnlyHosts with BYOC",
			Request{TeamID: teamA, BYOC: true, OnlyHosts: set("a3", "p1")}, mixed, []string{"a3"}},
		{"empty OnlyHosts matches nothing",
			Request{TeamID: teamA, OnlyHosts: map[string]bool{}}, mixed, nil},
		{"capacity: exact fit allowed",
			Request{VCPUs: 2, MemoryMB: 1024},
			[]Host{withUsed(online("h1", ""), 6, 7168, 3)}, []string{"h1"}},
		{"capacity: vCPUs over",
			Request{VCPUs: 3, MemoryMB: 1024},
			[]Host{withUsed(online("h1", ""), 6, 0, 3)}, nil},
		{"capacity: memory over",
			Request{VCPUs: 1, MemoryMB: 1025},
			[]Host{withUsed(online("h1", ""), 0, 7168, 3)}, nil},
		{"capacity: unknown is unlimited",
			Request{VCPUs: 64, MemoryMB: 1 << 20},
			[]Host{{ID: "h1", Status: StatusOnline, UsedVCPUs: 100, UsedMemoryMB: 1 << 22}}, []string{"h1"}},
		{"capacity: only memory known",
			Request{VCPUs: 64, MemoryMB: 2048},
			[]Host{{ID: "h1", Status: StatusOnline, MemoryMB: 2048}, {ID: "h2", Status: StatusOnline, MemoryMB: 1024}},
			[]string{"h1"}},
		{"no hosts", small, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.hosts)
			got := Eligible(tt.req, tt.hosts)
			if !slices.Equal(ids(got), tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("Eligible = %v, want %v", ids(got), tt.want)
			}
			if !reflect.DeepEqual(before, tt.hosts) {
				t.Errorf("Eligible modified its input")
			}
		})
	}
}

// TestIsolation checks every scheduler, over many picks, against BYOC isolation.
func TestIsolation(t *testing.T) {
	for _, name := range Names() {
		s, err := New(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			if h, err := s.Pick(Request{TeamID: teamA, BYOC: true, VCPUs: 1}, mixed); err != nil || h.TeamID != teamA || h.Status != StatusOnline {
				t.Fatalf("%s: BYOC team A got %+v, %v", name, h, err)
			}
			for _, team := range []string{teamA, teamB, "team-c"} {
				if h, err := s.Pick(Request{TeamID: team, VCPUs: 1}, mixed); err != nil || h.TeamID != "" || h.Status != StatusOnline {
					t.Fatalf("%s: normal team %s got %+v, %v", name, team, h, err)
				}
			}
		}
	}
}

func TestNoHostReasons(t *testing.T) {
	full := func(id, team string) Host { return withUsed(online(id, team), 8, 8192, 4) }
	tests := []struct {
		name  string
		req   Request
		hosts []Host
		want  string
	}{
		{"no hosts at all", Request{TeamID: teamA}, nil,
			"no platform host is registered"},
		{"only BYOC hosts exist", Request{TeamID: teamA}, []Host{online("a1", teamA)},
			"no platform host is registered"},
		{"platform hosts down", Request{TeamID: teamA},
			[]Host{withStatus(online("p1", ""), "unreachable"), withStatus(online("p2", ""), "offline")},
			"no online platform host"},
		{"platform hosts full", Request{TeamID: teamA, VCPUs: 2, MemoryMB: 1024},
			[]Host{full("p1", ""), full("p2", "")},
			"every eligible host is full (needs 2 vCPUs, 1024 MiB)"},
		{"platform hosts down or full", Request{TeamID: teamA, VCPUs: 2, MemoryMB: 1024},
			[]Host{full("p1", ""), withStatus(online("p2", ""), "draining")},
			"platform hosts are offline (1) or full (1) (needs 2 vCPUs, 1024 MiB)"},
		{"too big for any host", Request{TeamID: teamA, VCPUs: 16, MemoryMB: 1024},
			[]Host{online("p1", ""), full("p2", "")},
			"no online host among platform hosts is large enough (needs 16 vCPUs, 1024 MiB)"},
		{"BYOC team without hosts", Request{TeamID: teamA, BYOC: true},
			[]Host{online("p1", ""), online("b1", teamB)},
			"the team has no hosts of its own (BYOC)"},
		{"BYOC hosts offline", Request{TeamID: teamA, BYOC: true},
			[]Host{online("p1", ""), withStatus(online("a1", teamA), "unreachable")},
			"the team's own (BYOC) hosts are all offline"},
		{"BYOC hosts full", Request{TeamID: teamA, BYOC: true, VCPUs: 1, MemoryMB: 256},
			[]Host{online("p1", ""), full("a1", teamA)},
			"every eligible host is full (needs 1 vCPUs, 256 MiB)"},
		{"BYOC hosts offline or full", Request{TeamID: teamA, BYOC: true, VCPUs: 1, MemoryMB: 256},
			[]Host{full("a1", teamA), withStatus(online("a2", teamA), "offline"), full("a3", teamA)},
			"the team's own (BYOC) hosts are offline (1) or full (2) (needs 1 vCPUs, 256 MiB)"},
		{"template hosts offline", Request{TeamID: teamA, OnlyHosts: set("p1", "p2")},
			[]Host{withStatus(online("p1", ""), "offline"), withStatus(online("p2", ""), "pending"), online("p3", "")},
			"the template's hosts (2) are all offline"},
		{"template hosts offline or full", Request{TeamID: teamA, VCPUs: 1, MemoryMB: 1, OnlyHosts: set("p1", "p2")},
			[]Host{withStatus(online("p1", ""), "offline"), full("p2", ""), online("p3", "")},
			"the template's hosts (2) are offline (1) or full (1) (needs 1 vCPUs, 1 MiB)"},
		{"template hosts not platform", Request{TeamID: teamA, OnlyHosts: set("b1")},
			[]Host{online("b1", teamB), online("p1", "")},
			"the template's hosts (1) are not platform hosts"},
		{"template hosts not the team's", Request{TeamID: teamA, BYOC: true, OnlyHosts: set("b1")},
			[]Host{online("b1", teamB), online("a1", teamA)},
			"the template's hosts (1) are not among the team's own (BYOC) hosts"},
		{"template on no host", Request{TeamID: teamA, OnlyHosts: map[string]bool{}},
			[]Host{online("p1", "")},
			"the template's files are on no host"},
		{"no host has the tags", Request{TeamID: teamA, RequiredTags: []string{"gpu"}},
			[]Host{online("p1", ""), withTags(online("a1", teamA), "gpu")},
			"none of platform hosts has the tags gpu"},
		{"tagged hosts offline", Request{TeamID: teamA, RequiredTags: []string{"gpu", "eu"}},
			[]Host{online("p1", ""), withTags(withStatus(online("p2", ""), StatusUnreachable), "gpu", "eu")},
			"platform hosts tagged gpu, eu are all offline"},
		{"tagged hosts full", Request{TeamID: teamA, VCPUs: 2, MemoryMB: 1024, RequiredTags: []string{"gpu"}},
			[]Host{online("p1", ""), withTags(full("p2", ""), "gpu")},
			"every eligible host is full (needs 2 vCPUs, 1024 MiB)"},
		{"tagged BYOC hosts too small", Request{TeamID: teamA, BYOC: true, VCPUs: 16, RequiredTags: []string{"gpu"}},
			[]Host{withTags(online("p1", ""), "gpu"), withTags(online("a1", teamA), "gpu")},
			"no online host among the team's own (BYOC) hosts tagged gpu is large enough (needs 16 vCPUs, 0 MiB)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range Names() {
				s, _ := New(name)
				_, err := s.Pick(tt.req, tt.hosts)
				if !errors.Is(err, ErrNoHost) {
					t.Fatalf("%s: err = %v, want ErrNoHost", name, err)
				}
				var nh *NoHostError
				if !errors.As(err, &nh) {
					t.Fatalf("%s: err %T is not a *NoHostError", name, err)
				}
				if nh.Reason != tt.want {
					t.Errorf("%s: reason = %q, want %q", name, nh.Reason, tt.want)
				}
				if want := "no host can take this sandbox: " + tt.want; err.Error() != want {
					t.Errorf("%s: Error() = %q, want %q", name, err.Error(), want)
				}
			}
		})
	}
}

// TestRequiredTags: a request naming tags goes only to hosts carrying all of them,
// whichever scheduler picks, and other requests ignore tags.
func TestRequiredTags(t *testing.T) {
	hosts := []Host{
		withTags(online("h1", ""), "gpu"),
		withTags(online("h2", ""), "eu", "gpu"),
		withTags(withUsed(online("h3", ""), 7, 0, 3), "eu", "gpu", "ssd"),
		online("h4", ""),
		withTags(online("a1", teamA), "eu", "gpu"), // another pool
	}
	tests := []struct {
		tags []string
		want []string // eligible ids
	}{
		{nil, []string{"h1", "h2", "h3", "h4"}},
		{[]string{"gpu"}, []string{"h1", "h2", "h3"}},
		{[]string{"gpu", "eu"}, []string{"h2", "h3"}},
		{[]string{"eu", "gpu", "ssd"}, []string{"h3"}},
	}
	for _, tt := range tests {
		req := Request{TeamID: teamB, VCPUs: 1, MemoryMB: 256, RequiredTags: tt.tags}
		if got := ids(Eligible(req, hosts)); !slices.Equal(got, tt.want) {
			t.Errorf("tags %v: eligible %v, want %v", tt.tags, got, tt.want)
		}
		for _, name := range Names() {
			s, _ := New(name)
			h, err := s.Pick(req, hosts)
			if err != nil || !slices.Contains(tt.want, h.ID) {
				t.Errorf("%s, tags %v: picked %q (%v), want one of %v", name, tt.tags, h.ID, err, tt.want)
			}
		}
	}
	// Least-loaded still weighs load among the tagged hosts: h3 is busier than h2.
	s, _ := New(LeastLoaded)
	if h, _ := s.Pick(Request{TeamID: teamB, VCPUs: 1, RequiredTags: []string{"eu"}}, hosts); h.ID != "h2" {
		t.Errorf("least-loaded among eu hosts picked %s, want h2", h.ID)
	}
	// A BYOC team's tags select among its own hosts only.
	if h, err := s.Pick(Request{TeamID: teamA, BYOC: true, VCPUs: 1, RequiredTags: []string{"gpu"}}, hosts); err != nil || h.ID != "a1" {
		t.Errorf("BYOC tagged pick: %q %v, want a1", h.ID, err)
	}
}

func TestValidTag(t *testing.T) {
	for _, ok := range []string{"gpu", "eu-west-1", "a", "x86_64", "v1.2"} {
		if err := ValidTag(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "GPU", "-gpu", "a b", strings.Repeat("a", 64), "ü"} {
		if ValidTag(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestErrorWrapping(t *testing.T) {
	err := fmt.Errorf("create sandbox: %w", &NoHostError{Reason: "x"})
	if !errors.Is(err, ErrNoHost) {
		t.Fatal("wrapped NoHostError does not match ErrNoHost")
	}
	if errors.Is(errors.New("other"), ErrNoHost) {
		t.Fatal("unrelated error matches ErrNoHost")
	}
}

func TestNew(t *testing.T) {
	for _, name := range Names() {
		s, err := New(name)
		if err != nil || s.Name() != name {
			t.Errorf("New(%q) = %v, %v", name, s, err)
		}
	}
	for _, bad := range []string{"", "random", "Round-Robin", "leastloaded"} {
		s, err := New(bad)
		if err == nil || s != nil {
			t.Fatalf("New(%q) = %v, %v; want error", bad, s, err)
		}
		for _, valid := range Names() {
			if !strings.Contains(err.Error(), valid) {
				t.Errorf("New(%q) error %q does not list %q", bad, err, valid)
			}
		}
	}
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	s, _ := New(RoundRobin)
	hosts := []Host{online("h3", ""), online("h1", ""), online("h2", ""), withStatus(online("h0", ""), "offline")}
	counts := map[string]int{}
	var order []string
	for i := 0; i < 30; i++ {
		h, err := s.Pick(Request{TeamID: teamA, VCPUs: 1}, hosts)
		if err != nil {
			t.Fatal(err)
		}
		counts[h.ID]++
		order = append(order, h.ID)
	}
	if counts["h1"] != 10 || counts["h2"] != 10 || counts["h3"] != 10 || len(counts) != 3 {
		t.Errorf("counts = %v, want 10 each on h1, h2, h3", counts)
	}
	if got := strings.Join(order[:6], ","); got != "h1,h2,h3,h1,h2,h3" {
		t.Errorf("order = %s, want by ID", got)
	}
}

func TestRoundRobinConcurrent(t *testing.T) {
	s, _ := New(RoundRobin)
	hosts := []Host{online("h1", ""), online("h2", ""), online("h3", "")}
	const workers, per = 8, 300
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			for i := 0; i < per; i++ {
				h, err := s.Pick(Request{TeamID: teamA}, hosts)
				if err != nil {
					t.Error(err)
					return
				}
				local[h.ID]++
			}
			mu.Lock()
			for id, n := range local {
				counts[id] += n
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	// The counter hands out each index exactly once, so the split is exact.
	for _, id := range []string{"h1", "h2", "h3"} {
		if counts[id] != workers*per/3 {
			t.Errorf("counts = %v, want %d each", counts, workers*per/3)
			break
		}
	}
}

func TestLeastLoadedPicksEmptiest(t *testing.T) {
	tests := []struct {
		name  string
		req   Request
		hosts []Host
		want  string
	}{
		{"lowest vCPU load",
			Request{VCPUs: 1, MemoryMB: 128},
			[]Host{withUsed(online("h1", ""), 4, 0, 2), withUsed(online("h2", ""), 1, 0, 5), withUsed(online("h3", ""), 6, 0, 1)},
			"h2"},
		{"load is the larger of vCPU and memory",
			Request{VCPUs: 1, MemoryMB: 1024},
			[]Host{withUsed(online("h1", ""), 0, 6144, 1), withUsed(online("h2", ""), 4, 1024, 1)},
			"h2"},
		{"load is relative to capacity",
			Request{VCPUs: 1},
			[]Host{
				{ID: "small", Status: StatusOnline, VCPUs: 4, UsedVCPUs: 1},
				{ID: "big", Status: StatusOnline, VCPUs: 32, UsedVCPUs: 4},
			},
			"big"},
		{"tie broken by fewer sandboxes",
			Request{VCPUs: 1},
			[]Host{withUsed(online("h1", ""), 2, 0, 3), withUsed(online("h2", ""), 2, 0, 1)},
			"h2"},
		{"tie broken by ID",
			Request{VCPUs: 1},
			[]Host{withUsed(online("h2", ""), 2, 0, 1), withUsed(online("h1", ""), 2, 0, 1)},
			"h1"},
		{"full host skipped even if it would otherwise win",
			Request{VCPUs: 4},
			[]Host{withUsed(online("h1", ""), 6, 0, 0), withUsed(online("h2", ""), 4, 0, 9)},
			"h2"},
		{"hosts without capacity compared by sandboxes",
			Request{VCPUs: 1},
			[]Host{
				{ID: "u1", Status: StatusOnline, UsedVCPUs: 1, Sandboxes: 4},
				{ID: "u2", Status: StatusOnline, UsedVCPUs: 50, Sandboxes: 2},
			},
			"u2"},
		{"a host that reports capacity is preferred",
			Request{VCPUs: 1},
			[]Host{
				{ID: "u1", Status: StatusOnline},
				withUsed(online("h1", ""), 6, 0, 6),
			},
			"h1"},
		{"a host that reports capacity is preferred, whatever the ID order",
			Request{VCPUs: 1},
			[]Host{
				withUsed(online("z1", ""), 6, 0, 6),
				{ID: "a1", Status: StatusOnline},
			},
			"z1"},
		{"offline empty host skipped",
			Request{VCPUs: 1},
			[]Host{withStatus(online("h1", ""), "unreachable"), withUsed(online("h2", ""), 7, 0, 7)},
			"h2"},
	}
	s, _ := New(LeastLoaded)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := s.Pick(tt.req, tt.hosts)
			if err != nil || h.ID != tt.want {
				t.Errorf("Pick = %q, %v; want %q", h.ID, err, tt.want)
			}
		})
	}
}

// place simulates the control plane: pick, then reserve the pick's usage.
func place(t *testing.T, s Scheduler, req Request, hosts []Host, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		h, err := s.Pick(req, hosts)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		j := slices.IndexFunc(hosts, func(c Host) bool { return c.ID == h.ID })
		hosts[j].UsedVCPUs += req.VCPUs
		hosts[j].UsedMemoryMB += req.MemoryMB
		hosts[j].Sandboxes++
		counts[h.ID]++
	}
	return counts
}

func TestLeastLoadedSpreads(t *testing.T) {
	s, _ := New(LeastLoaded)
	req := Request{TeamID: teamA, VCPUs: 1, MemoryMB: 512}

	hosts := []Host{online("h1", ""), online("h2", ""), online("h3", "")}
	counts := place(t, s, req, hosts, 12)
	if counts["h1"] != 4 || counts["h2"] != 4 || counts["h3"] != 4 {
		t.Errorf("equal hosts: counts = %v, want 4 each", counts)
	}
	// 3 hosts × 8 vCPUs: 24 fit, the 25th does not.
	place(t, s, req, hosts, 12)
	if _, err := s.Pick(req, hosts); !errors.Is(err, ErrNoHost) {
		t.Errorf("after filling every host: err = %v, want ErrNoHost", err)
	}

	// Unequal capacity: the bigger host takes proportionally more.
	hosts = []Host{
		{ID: "big", Status: StatusOnline, VCPUs: 16, MemoryMB: 16384},
		{ID: "small", Status: StatusOnline, VCPUs: 8, MemoryMB: 8192},
	}
	counts = place(t, s, req, hosts, 12)
	if counts["big"] != 8 || counts["small"] != 4 {
		t.Errorf("unequal hosts: counts = %v, want big 8, small 4", counts)
	}

	// Hosts without capacity spread by sandbox count.
	hosts = []Host{{ID: "u1", Status: StatusOnline}, {ID: "u2", Status: StatusOnline}}
	counts = place(t, s, req, hosts, 10)
	if counts["u1"] != 5 || counts["u2"] != 5 {
		t.Errorf("unknown capacity: counts = %v, want 5 each", counts)
	}
}
