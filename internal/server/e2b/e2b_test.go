package e2b_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// A sandbox's whole E2B lifecycle, as the SDKs drive it: create, info, setTimeout,
// connect (running: end only extended), pause, pause again, connect (resumed), kill,
// kill again; envd reached through the port proxy with the token the API gave.
func TestLifecycle(t *testing.T) {
	env := servertest.New(t)
	team := env.NewTeam(t, "e2b@example.com")
	c := newCaller(t, env.URL, "e2b_"+strings.TrimPrefix(team.Key, "wrn_"))

	sb := c.create(`{"templateID":"base","timeout":300,"metadata":{"k":"v"},"envVars":{"GREETING":"hi"},"allow_internet_access":false,"secure":true}`)
	id := sb["sandboxID"].(string)
	if sb["clientID"] != "6532622b" || sb["envdVersion"] != envdapi.Version || sb["domain"] != servertest.Domain ||
		sb["templateID"] != "base" || sb["trafficAccessToken"] != nil {
		t.Errorf("create answered %v", sb)
	}
	token, _ := sb["envdAccessToken"].(string)
	if len(token) < 32 {
		t.Fatalf("envdAccessToken %q", token)
	}
	res, err := team.Client.Exec(context.Background(), id, "/bin/sh", []string{"-c", "printf %s $GREETING"}, 10*time.Second)
	if err != nil || string(res.Stdout) != "hi" {
		t.Errorf("envVars in the sandbox: %+v %v", res, err)
	}

	info := c.info(id)
	end := timeOf(t, info["endAt"])
	if d := time.Until(end); d < 290*time.Second || d > 301*time.Second {
		t.Errorf("endAt %v is %v from now, want about 300 s", end, d)
	}
	if info["state"] != "running" || info["envdAccessToken"] != token || info["cpuCount"] != 1.0 || info["memoryMB"] != 512.0 ||
		info["allowInternetAccess"] != false || obj(t, info["metadata"])["k"] != "v" || obj(t, info["lifecycle"])["onTimeout"] != "kill" {
		t.Errorf("info %v", info)
	}
	// envd through the port proxy: the token the API gave opens it, another does not.
	for tok, want := range map[string]int{token: 404, "wrong-token-0123456789": 401} {
		if got := envdStatus(t, env.URL, id, tok); got != want {
			t.Errorf("GET /files of a missing file with token %q: %d, want %d", tok, got, want)
		}
	}

	// setTimeout may shorten; connect never does, a longer timeout extends.
	if status, _, v := c.do("POST", "/sandboxes/"+id+"/timeout", `{"timeout":60}`); status != 204 {
		t.Fatalf("setTimeout: %d %v", status, v)
	}
	end = timeOf(t, c.info(id)["endAt"])
	if d := time.Until(end); d < 50*time.Second || d > 61*time.Second {
		t.Errorf("after setTimeout 60, endAt is %v from now", d)
	}
	if status, _, v := c.do("POST", "/v2/sandboxes/"+id+"/connect", `{"timeout":10}`); status != 200 || obj(t, v)["envdAccessToken"] != token {
		t.Errorf("connect to a running sandbox: %d %v", status, v)
	}
	if got := timeOf(t, c.info(id)["endAt"]); !got.Equal(end) {
		t.Errorf("connect with a shorter timeout moved endAt %v → %v", end, got)
	}
	if status, _, _ := c.do("POST", "/sandboxes/"+id+"/connect", `{"timeout":600}`); status != 200 {
		t.Errorf("connect at E2B's documented path: %d", status)
	}
	if d := time.Until(timeOf(t, c.info(id)["endAt"])); d < 590*time.Second {
		t.Errorf("connect with a longer timeout left endAt %v from now", d)
	}
	if status, _, _ := c.do("POST", "/sandboxes/"+id+"/refreshes", `{"duration":3600}`); status != 204 {
		t.Errorf("refresh: %d", status)
	}
	if d := time.Until(timeOf(t, c.info(id)["endAt"])); d < 3590*time.Second {
		t.Errorf("refresh left endAt %v from now", d)
	}

	// Pause, pause again (409: the SDK's false), connect resumes (201) with the end reset.
	if status, _, v := c.do("POST", "/sandboxes/"+id+"/pause", `{}`); status != 204 {
		t.Fatalf("pause: %d %v", status, v)
	}
	if status, _, _ := c.do("POST", "/sandboxes/"+id+"/pause", ""); status != 409 {
		t.Errorf("pause of a paused sandbox: %d, want 409", status)
	}
	if got := c.info(id)["state"]; got != "paused" {
		t.Errorf("paused sandbox shows state %v", got)
	}
	if got := envdStatus(t, env.URL, id, token); got != http.StatusBadGateway {
		t.Errorf("envd of a paused sandbox through the proxy: %d, want 502", got)
	}
	if status, _, _ := c.do("POST", "/sandboxes/"+id+"/resume", `{"timeout":30}`); status != 201 {
		t.Errorf("deprecated resume of a paused sandbox: %d, want 201", status)
	}
	if status, _, _ := c.do("POST", "/sandboxes/"+id+"/resume", `{}`); status != 409 {
		t.Errorf("resume of a running sandbox: %d, want 409", status)
	}
	c.do("POST", "/sandboxes/"+id+"/pause", "")
	status, _, v := c.do("POST", "/v2/sandboxes/"+id+"/connect", `{"timeout":120}`)
	if status != 201 || obj(t, v)["envdAccessToken"] != token {
		t.Fatalf("connect to a paused sandbox: %d %v, want 201 with the same token", status, v)
	}
	info = c.info(id)
	if d := time.Until(timeOf(t, info["endAt"])); info["state"] != "running" || d < 110*time.Second || d > 121*time.Second {
		t.Errorf("after connect resumed it: %v (endAt %v from now)", info["state"], d)
	}
	if got := envdStatus(t, env.URL, id, token); got != 404 {
		t.Errorf("envd of the resumed sandbox: %d", got)
	}

	// Kill: 204, then 404 (the SDK's false) on every route.
	if status, _, _ := c.do("DELETE", "/sandboxes/"+id, ""); status != 204 {
		t.Fatalf("kill: %d", status)
	}
	for _, r := range [][2]string{{"DELETE", ""}, {"GET", ""}, {"POST", "/timeout"}, {"POST", "/pause"}, {"POST", "/connect"}, {"POST", "/refreshes"}} {
		if status, _, _ := c.do(r[0], "/sandboxes/"+id+r[1], `{"timeout":5}`); status != 404 {
			t.Errorf("%s %s of a killed sandbox: %d, want 404", r[0], r[1], status)
		}
	}
	if got := envdStatus(t, env.URL, id, token); got != http.StatusBadGateway {
		t.Errorf("envd of a killed sandbox: %d, want 502", got)
	}
}

// envdStatus GETs a missing file from a sandbox's envd through the port proxy, with
// the access token tok.
func envdStatus(t *testing.T, base, id, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/files?path=/no/such/file", nil)
	req.Host = fmt.Sprintf("%d-%s.%s", envdapi.Port, id, servertest.Domain)
	req.Header.Set("X-Access-Token", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A sandbox with private ports: the create answers its traffic token, which the port
// proxy then asks for; envd's port needs only envd's token.
func TestPrivateTraffic(t *testing.T) {
	env := servertest.New(t)
	c := newCaller(t, env.URL, env.NewTeam(t, "private@example.com").Key)
	if status, _, _ := c.do("GET", "/health", ""); status != 204 {
		t.Errorf("GET /health: %d", status)
	}
	sb := c.create(`{"templateID":"base","network":{"allowPublicTraffic":false}}`)
	id := sb["sandboxID"].(string)
	traffic, _ := sb["trafficAccessToken"].(string)
	if traffic == "" || obj(t, c.info(id)["network"])["allowPublicTraffic"] != false {
		t.Fatalf("a private sandbox's create: %v", sb)
	}
	// Connect answers the same token (the SDKs keep using it).
	if _, _, v := c.do("POST", "/v2/sandboxes/"+id+"/connect", `{"timeout":60}`); obj(t, v)["trafficAccessToken"] != traffic {
		t.Errorf("connect answered another traffic token: %v", v)
	}
	port := func(tok string) int {
		req, _ := http.NewRequest("GET", env.URL+"/", nil)
		req.Host = fmt.Sprintf("8000-%s.%s", id, servertest.Domain)
		if tok != "" {
			req.Header.Set("E2b-Traffic-Access-Token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Nothing listens on 8000: with the token the request reaches the sandbox (502,
	// port not open); without it, or with another, the proxy refuses it.
	for tok, want := range map[string]int{traffic: 502, "": 403, "wrt_" + strings.Repeat("0", 64): 403} {
		if got := port(tok); got != want {
			t.Errorf("port 8000 with traffic token %q: %d, want %d", tok, got, want)
		}
	}
	if got := envdStatus(t, env.URL, id, sb["envdAccessToken"].(string)); got != 404 {
		t.Errorf("envd of a private sandbox with its token: %d", got)
	}
}

// A sandbox ends at its end: killed, or paused when created with autoPause.
func TestEndAt(t *testing.T) {
	env := servertest.New(t)
	c := newCaller(t, env.URL, env.NewTeam(t, "end@example.com").Key)
	kill := c.create(`{"templateID":"base","timeout":1}`)["sandboxID"].(string)
	killEnd := timeOf(t, c.info(kill)["endAt"])
	pause := c.create(`{"templateID":"base","timeout":1,"autoPause":true}`)["sandboxID"].(string)
	if got := obj(t, c.info(pause)["lifecycle"])["onTimeout"]; got != "pause" {
		t.Errorf("autoPause sandbox's onTimeout %v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		killed, _, _ := c.do("GET", "/sandboxes/"+kill, "")
		if killed == 404 && killEnd != (time.Time{}) {
			if late := time.Since(killEnd); late > 1500*time.Millisecond {
				t.Errorf("killed %v after its end, want within about a second", late)
			}
			killEnd = time.Time{}
		}
		state := c.info(pause)["state"]
		if killed == 404 && state == "paused" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after their end: the kill one answers %d, the autoPause one is %v", killed, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(env.Agent.Manager.List()); n != 1 {
		t.Errorf("%d sandboxes on the host, want the paused one", n)
	}
	// A paused sandbox does not end; connect gives it a new end.
	if status, _, _ := c.do("POST", "/v2/sandboxes/"+pause+"/connect", `{"timeout":2}`); status != 201 {
		t.Fatalf("connect to the auto-paused sandbox: %d", status)
	}
	time.Sleep(500 * time.Millisecond)
	if got := c.info(pause)["state"]; got != "running" {
		t.Errorf("0.5 s into its new 2 s: %v", got)
	}
}

// Bad input gets a 4xx naming the problem, and nothing is created.
func TestBadInput(t *testing.T) {
	env := servertest.New(t)
	c := newCaller(t, env.URL, env.NewTeam(t, "bad@example.com").Key)
	id := c.create(`{"templateID":"base"}`)["sandboxID"].(string)
	for _, tc := range []struct {
		method, path, body string
		status             int
		says               string
	}{
		{"POST", "/v2/sandboxes", `{"templateID":"nope"}`, 404, "template 'nope' not found"},
		{"POST", "/sandboxes", `{"templateID":"base","timeout":0}`, 400, "Timeout must be greater than 0"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","timeout":-5}`, 400, "Timeout must be greater than 0"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","timeout":99999999}`, 400, "out of range"},
		{"POST", "/v2/sandboxes", `{"templateID":`, 400, "request body"},
		{"POST", "/v2/sandboxes", `[1]`, 400, "JSON object"},
		{"POST", "/v2/sandboxes", `{}`, 400, "templateID is required"},
		{"POST", "/v2/sandboxes", `{"templateID":"base:v2"}`, 400, "tags"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","mcp":{"x":{}}}`, 400, "mcp"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","iam":{"tokens":{"a":{}}}}`, 400, "iam"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","volumeMounts":[{"name":"v","path":"/data"}]}`, 400, "volumeMounts"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","network":{"allowOut":["example.com"]}}`, 400, "network.allowOut"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","network":{"denyOut":["10.0.0.0/8"]}}`, 400, "network.denyOut"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","autoResume":{"enabled":true},"autoPause":true}`, 400, "autoResume"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","autoPause":true,"autoPauseMemory":false}`, 400, "autoPauseMemory"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","envVars":{"A=B":"1"}}`, 400, "A=B"},
		{"POST", "/sandboxes/" + id + "/timeout", `{}`, 400, "timeout is required"},
		{"POST", "/sandboxes/" + id + "/timeout", `{"timeout":0}`, 400, "out of range"},
		{"POST", "/sandboxes/" + id + "/timeout", `{"timeout":"soon"}`, 400, "request body"},
		{"POST", "/sandboxes/" + id + "/refreshes", `{"duration":3601}`, 400, "duration"},
		{"POST", "/sandboxes/" + id + "/pause", `{"memory":false}`, 400, "memory false"},
		{"POST", "/v2/sandboxes/" + id + "/connect", `{"timeout":-1}`, 400, "timeout"},
		{"GET", "/sandboxes/" + id + "-a-b", "", 400, "Invalid sandbox ID"},
		{"GET", "/sandboxes/sbnotthere0000000000", "", 404, "doesn't exist"},
		{"GET", "/sandboxes/..%2Fetc", "", 404, "doesn't exist"},
		{"GET", "/v2/sandboxes?nextToken=garbage", "", 400, "Invalid next token"},
		{"GET", "/v2/sandboxes?limit=0", "", 400, "limit"},
		{"GET", "/v2/sandboxes?limit=101", "", 400, "limit"},
		{"GET", "/v2/sandboxes?order=sideways", "", 400, "order"},
		{"GET", "/v2/sandboxes?state=stopped", "", 400, "state"},
		{"GET", "/v2/sandboxes?startedAfter=yesterday", "", 400, "startedAfter"},
		{"GET", "/v2/sandboxes?template=base:v1", "", 400, "tags"},
		{"GET", "/v2/sandboxes?metadata=novalue", "", 400, "metadata"},
	} {
		status, _, v := c.do(tc.method, tc.path, tc.body)
		msg, _ := obj(t, v)["message"].(string)
		if status != tc.status || !strings.Contains(msg, tc.says) {
			t.Errorf("%s %s %s: %d %q, want %d saying %q", tc.method, tc.path, tc.body, status, msg, tc.status, tc.says)
		}
	}
	// E2B routes Wrenn does not serve say so (501), not "no such sandbox" (404).
	for _, r := range [][2]string{{"GET", "/sandboxes/metrics?sandbox_ids=" + id}, {"POST", "/sandboxes/" + id + "/fork"}, {"GET", "/snapshots"}} {
		status, _, v := c.do(r[0], r[1], "")
		if msg, _ := obj(t, v)["message"].(string); status != 501 || !strings.Contains(msg, "not supported by Wrenn") {
			t.Errorf("%s %s: %d %q, want 501", r[0], r[1], status, msg)
		}
	}
	// Metrics: a list (E2B's SandboxMetric[]), and bad times are 400.
	if status, _, v := c.do("GET", "/sandboxes/"+id+"/metrics", ""); status != 200 {
		t.Errorf("metrics: %d %v", status, v)
	} else if _, ok := v.([]any); !ok {
		t.Errorf("metrics: %v, want a list", v)
	}
	for _, q := range []string{"?start=yesterday", "?end=-5", "?start=2000000000&end=1000000000"} {
		if status, _, _ := c.do("GET", "/sandboxes/"+id+"/metrics"+q, ""); status != 400 {
			t.Errorf("metrics%s: %d, want 400", q, status)
		}
	}
	// The legacy {id}-{clientID} form is the sandbox.
	if status, _, _ := c.do("GET", "/sandboxes/"+id+"-6532622b", ""); status != 200 {
		t.Errorf("legacy id form: %d", status)
	}
	// An oversize body is refused before it is read whole.
	big := `{"templateID":"base","metadata":{"k":"` + strings.Repeat("x", 2<<20) + `"}}`
	if status, _, _ := c.do("POST", "/v2/sandboxes", big); status != 413 {
		t.Errorf("a 2 MiB create: %d, want 413", status)
	}
	if n := len(env.Agent.Manager.List()); n != 1 {
		t.Errorf("bad requests left %d sandboxes on the host, want 1", n)
	}
}

// Credentials: a missing or made-up key is 401; a key works in its wrn_ and e2b_
// forms; another team's key finds none of this team's sandboxes, on any route.
func TestAuth(t *testing.T) {
	env := servertest.New(t)
	team := env.NewTeam(t, "owner@example.com")
	c := newCaller(t, env.URL, team.Key)
	id := c.create(`{"templateID":"base"}`)["sandboxID"].(string)
	for _, key := range []string{"", "e2b_00000000000000000000000000000000", "e2b_nothex", "wrn_" + strings.Repeat("0", 32)} {
		if status, _, _ := newCaller(t, env.URL, key).do("GET", "/sandboxes/"+id, ""); status != 401 {
			t.Errorf("key %q: %d, want 401", key, status)
		}
	}
	e2bForm := newCaller(t, env.URL, "e2b_"+strings.TrimPrefix(team.Key, "wrn_"))
	if status, _, _ := e2bForm.do("GET", "/sandboxes/"+id, ""); status != 200 {
		t.Errorf("the key's e2b_ form: %d", status)
	}
	other := newCaller(t, env.URL, env.NewTeam(t, "other@example.com").Key)
	for _, r := range [][3]string{
		{"GET", "", ""}, {"DELETE", "", ""}, {"POST", "/timeout", `{"timeout":5}`}, {"POST", "/refreshes", `{"duration":5}`},
		{"POST", "/pause", ""}, {"POST", "/resume", ""}, {"POST", "/connect", `{"timeout":5}`}, {"POST", "/connect", ""},
	} {
		if status, _, _ := other.do(r[0], "/sandboxes/"+id+r[1], r[2]); status != 404 {
			t.Errorf("another team's %s %s: %d, want 404", r[0], r[1], status)
		}
	}
	if status, _, _ := other.do("POST", "/v2/sandboxes/"+id+"/connect", `{"timeout":5}`); status != 404 {
		t.Errorf("another team's v2 connect: %d", status)
	}
	_, _, v := other.do("GET", "/v2/sandboxes", "")
	if got := ids(t, v); len(got) != 0 {
		t.Errorf("another team lists %v", got)
	}
	if got := c.info(id)["state"]; got != "running" {
		t.Errorf("after another team's attempts the sandbox is %v", got)
	}
}

// Listing: filters, both orders, pages of one to the end, the running count.
func TestList(t *testing.T) {
	env := servertest.New(t)
	c := newCaller(t, env.URL, env.NewTeam(t, "list@example.com").Key)
	var made []string
	for i := range 3 {
		sb := c.create(fmt.Sprintf(`{"templateID":"base","metadata":{"run":"r1","n":"%d","odd key&=":"a b/c&d=e"}}`, i))
		made = append(made, sb["sandboxID"].(string))
		time.Sleep(5 * time.Millisecond) // distinct start times
	}
	if status, _, _ := c.do("POST", "/sandboxes/"+made[1]+"/pause", ""); status != 204 {
		t.Fatal("pause")
	}
	newestFirst := slices.Clone(made)
	slices.Reverse(newestFirst)

	status, hdr, v := c.do("GET", "/v2/sandboxes", "")
	if got := ids(t, v); status != 200 || !slices.Equal(got, newestFirst) || hdr.Get("X-Next-Token") != "" || hdr.Get("X-Total-Running") != "2" {
		t.Errorf("default listing: %d %v (next %q, running %q), want %v newest first", status, got, hdr.Get("X-Next-Token"), hdr.Get("X-Total-Running"), newestFirst)
	}
	// As the SDKs send it: each key and value encoded (encodeURIComponent), the pairs
	// form-encoded (URLSearchParams, which encodes them again but not its & and =),
	// and the whole encoded once more as a query parameter.
	meta := func(pairs ...string) string {
		var parts []string
		for i := 0; i < len(pairs); i += 2 {
			parts = append(parts, urlEnc(urlEnc(pairs[i]))+"="+urlEnc(urlEnc(pairs[i+1])))
		}
		return urlEnc(strings.Join(parts, "&"))
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"?metadata=" + meta("n", "2"), made[2:]},
		{"?metadata=" + meta("odd key&=", "a b/c&d=e", "n", "0"), made[:1]},
		{"?metadata=" + meta("n", "nine"), nil},
		{"?state=paused", made[1:2]},
		{"?state=running", []string{made[2], made[0]}},
		{"?state=running&state=paused", newestFirst},
		{"?state=running,paused&order=asc", made},
		{"?template=base&order=asc", made},
		{"?template=nosuch", nil},
	} {
		_, _, v := c.do("GET", "/v2/sandboxes"+tc.query, "")
		if got := ids(t, v); !slices.Equal(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
			t.Errorf("%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	// startedAfter: a sandbox's own startedAt includes it; a moment later excludes it.
	started := c.info(made[1])["startedAt"].(string)
	_, _, v = c.do("GET", "/v2/sandboxes?order=asc&startedAfter="+urlEnc(started), "")
	if got := ids(t, v); !slices.Equal(got, made[1:]) {
		t.Errorf("startedAfter its startedAt: %v, want %v", got, made[1:])
	}
	later := timeOf(t, started).Add(time.Microsecond).Format(time.RFC3339Nano)
	_, _, v = c.do("GET", "/v2/sandboxes?order=asc&startedAfter="+urlEnc(later), "")
	if got := ids(t, v); !slices.Equal(got, made[2:]) {
		t.Errorf("startedAfter a µs later: %v, want %v", got, made[2:])
	}
	// Pages of one, in each order, to the end; the last page has no token.
	for _, order := range []string{"asc", "desc"} {
		var seen []string
		next := ""
		for page := 0; ; page++ {
			q := "?limit=1&order=" + order
			if next != "" {
				q += "&nextToken=" + urlEnc(next)
			}
			status, hdr, v := c.do("GET", "/v2/sandboxes"+q, "")
			if status != 200 || page > 5 {
				t.Fatalf("%s page %d: %d", order, page, status)
			}
			seen = append(seen, ids(t, v)...)
			if next = hdr.Get("X-Next-Token"); next == "" {
				break
			}
			// A token is for the order it was made in.
			other := map[string]string{"asc": "desc", "desc": "asc"}[order]
			if status, _, _ := c.do("GET", "/v2/sandboxes?order="+other+"&nextToken="+urlEnc(next), ""); status != 400 {
				t.Errorf("a %s token in a %s listing: %d, want 400", order, other, status)
			}
		}
		want := made
		if order == "desc" {
			want = newestFirst
		}
		if !slices.Equal(seen, want) {
			t.Errorf("%s pages of one: %v, want %v", order, seen, want)
		}
	}
	// The deprecated listing: running ones only.
	_, _, v = c.do("GET", "/sandboxes", "")
	if got := ids(t, v); len(got) != 2 || slices.Contains(got, made[1]) {
		t.Errorf("GET /sandboxes: %v, want the two running", got)
	}
}

func urlEnc(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "=", "%3D", "+", "%2B", " ", "%20", "/", "%2F", ":", "%3A")
	return r.Replace(s)
}
