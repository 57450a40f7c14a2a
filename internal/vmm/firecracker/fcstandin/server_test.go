package fcstandin

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the stand-in process when a launcher from WriteLauncher
// runs it (process_test.go).
func TestMain(m *testing.M) {
	if IsStandin() {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

const testMemMiB = 8

// apiClient talks HTTP to a Firecracker API socket.
type apiClient struct {
	t    *testing.T
	http *http.Client
}

func newAPIClient(t *testing.T, sock string) *apiClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &apiClient{t: t, http: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// do sends a request and returns the status, the fault message of a 4xx and the
// decoded JSON of a 200.
func (c *apiClient) do(method, path, body string) (int, string, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, "http://localhost"+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(r)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: answer %q is not a JSON object: %v", method, path, raw, err)
		}
	}
	fault, _ := out["fault_message"].(string)
	return resp.StatusCode, fault, out
}

// ok sends a request that must succeed (204 for PUT/PATCH, 200 for GET).
func (c *apiClient) ok(method, path, body string) map[string]any {
	c.t.Helper()
	status, fault, out := c.do(method, path, body)
	want := http.StatusNoContent
	if method == http.MethodGet {
		want = http.StatusOK
	}
	if status != want {
		c.t.Fatalf("%s %s %s: status %d, want %d (%s)", method, path, body, status, want, fault)
	}
	return out
}

// refused sends a request that must be refused with a 400 whose message names why.
func (c *apiClient) refused(method, path, body string, why ...string) {
	c.t.Helper()
	status, fault, _ := c.do(method, path, body)
	if status != http.StatusBadRequest {
		c.t.Fatalf("%s %s %s: status %d, want 400", method, path, body, status)
	}
	for _, w := range why {
		if !strings.Contains(fault, w) {
			c.t.Errorf("%s %s: the fault_message %q does not say %q", method, path, fault, w)
		}
	}
}

type testServer struct {
	*Server
	*apiClient
	dir, journal string
}

// startServer runs a Server in-process on a unix socket in a new directory.
func startServer(t *testing.T, dir string) *testServer {
	t.Helper()
	spec := testSpec(t)
	if dir == "" {
		dir = t.TempDir()
	}
	sock := filepath.Join(dir, "api.sock")
	os.Remove(sock)
	journal := filepath.Join(dir, JournalName)
	srv, err := NewServer(spec, "vm-test", journal)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return &testServer{Server: srv, apiClient: newAPIClient(t, sock), dir: dir, journal: journal}
}

func (s *testServer) noViolations(t *testing.T) {
	t.Helper()
	if v := s.Violations(); len(v) > 0 {
		t.Fatalf("violations: %q", v)
	}
}

var bootSequence = []req{
	{"PUT", "/logger", `{"log_path":"/dev/null","level":"Info"}`},
	{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":8,"track_dirty_pages":true}`},
	{"PUT", "/boot-source", `{"kernel_image_path":"/k/vmlinux","boot_args":"console=ttyS0 reboot=k panic=1","initrd_path":"/k/initrd.img"}`},
	{"PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/img/rootfs.ext4","is_root_device":true,"is_read_only":false}`},
	{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap-test0","guest_mac":"02:FC:00:00:00:05"}`},
	{"PUT", "/mmds/config", `{"version":"V2","network_interfaces":["eth0"]}`},
	{"PUT", "/mmds", `{"instanceID":"sbx-1","envID":"base"}`},
	{"PUT", "/entropy", `{}`},
	{"PUT", "/actions", `{"action_type":"InstanceStart"}`},
}

func (s *testServer) boot(t *testing.T) {
	t.Helper()
	for _, r := range bootSequence {
		s.ok(r.method, r.path, r.body)
	}
}

func TestBootPauseSnapshotSequence(t *testing.T) {
	s := startServer(t, "")
	if got := s.ok("GET", "/", "")["state"]; got != "Not started" {
		t.Fatalf("state before boot = %v", got)
	}
	s.boot(t)
	info := s.ok("GET", "/", "")
	if info["state"] != "Running" || info["app_name"] != "Firecracker" || info["id"] != "vm-test" || info["vmm_version"] != Version {
		t.Fatalf("GET / = %v", info)
	}
	if v := s.ok("GET", "/version", "")["firecracker_version"]; v != Version {
		t.Fatalf("GET /version = %v", v)
	}
	if d := s.ok("GET", "/mmds", ""); d["instanceID"] != "sbx-1" {
		t.Fatalf("GET /mmds = %v", d)
	}
	s.ok("PUT", "/mmds", `{"instanceID":"sbx-2"}`) // any time
	s.ok("PATCH", "/vm", `{"state":"Paused"}`)
	full, fullState := filepath.Join(s.dir, "mem.full"), filepath.Join(s.dir, "state.full")
	s.ok("PUT", "/snapshot/create", `{"snapshot_path":"`+fullState+`","mem_file_path":"`+full+`","snapshot_type":"Full"}`)
	s.ok("PATCH", "/vm", `{"state":"Resumed"}`)
	s.ok("PATCH", "/vm", `{"state":"Paused"}`)
	diff, diffState := filepath.Join(s.dir, "mem.diff"), filepath.Join(s.dir, "state.diff")
	s.ok("PUT", "/snapshot/create", `{"snapshot_path":"`+diffState+`","mem_file_path":"`+diff+`","snapshot_type":"Diff"}`)
	s.noViolations(t)

	entries, err := ReadJournal(s.journal)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(bootSequence)+10 {
		t.Errorf("journal has %d entries, want %d", len(entries), len(bootSequence)+10)
	}
	for _, e := range entries {
		if e.Fault != "" || e.Status >= 300 || e.Pid != os.Getpid() {
			t.Errorf("journal entry %+v", e)
		}
	}
	if e := entries[2]; e.Method != "PUT" || e.Path != "/machine-config" || string(e.Body) != `{"vcpu_count":2,"mem_size_mib":8,"track_dirty_pages":true}` || e.Status != 204 {
		t.Errorf("journal entry 2 = %+v", e)
	}

	// The Full file holds the memory at the first pause; the Diff only the pages the
	// guest wrote in its second run, holes elsewhere.
	fullMem, diffMem := readFile(t, full), readFile(t, diff)
	if len(fullMem) != testMemMiB<<20 || len(diffMem) != testMemMiB<<20 {
		t.Fatalf("memory files have %d and %d bytes, want %d", len(fullMem), len(diffMem), testMemMiB<<20)
	}
	var diffPages, zeroPages int
	for i := range len(fullMem) / PageSize {
		fp, dp := fullMem[i*PageSize:(i+1)*PageSize], diffMem[i*PageSize:(i+1)*PageSize]
		wantFull := (i+1)%5 == 0 && i%4 != 3 // written in generation 1 only
		if gen := binary.LittleEndian.Uint64(fp); wantFull != (gen == 1) || !wantFull && !bytes.Equal(fp, zeroPage) {
			t.Fatalf("Full page %d starts with generation %d", i, gen)
		}
		if bytes.Equal(fp, zeroPage) {
			zeroPages++
		}
		wantDiff := (i+2)%5 == 0 && i%4 != 3
		if wantDiff {
			diffPages++
			if binary.LittleEndian.Uint64(dp) != 2 || binary.LittleEndian.Uint64(dp[8:]) != uint64(i) {
				t.Fatalf("Diff page %d = %x…", i, dp[:16])
			}
		} else if !bytes.Equal(dp, zeroPage) {
			t.Fatalf("Diff page %d is not a hole", i)
		}
	}
	if zeroPages < len(fullMem)/PageSize/2 || diffPages == 0 {
		t.Fatalf("%d zero pages in the Full file, %d pages in the Diff", zeroPages, diffPages)
	}
	var st snapshotState
	if err := json.Unmarshal(readFile(t, diffState), &st); err != nil {
		t.Fatal(err)
	}
	if st.MemSizeMiB != testMemMiB || st.VcpuCount != 2 || st.SnapshotType != "Diff" || len(st.MemorySHA256) != 64 {
		t.Fatalf("Diff state = %+v", st)
	}
	var fi syscall.Stat_t
	if err := syscall.Stat(diff, &fi); err == nil && fi.Blocks*512 >= int64(len(diffMem)) {
		t.Logf("the Diff file is not sparse here (%d blocks)", fi.Blocks)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOrderViolationsAreRefused(t *testing.T) {
	create := func(dir string) string {
		return `{"snapshot_path":"` + dir + `/state","mem_file_path":"` + dir + `/mem","snapshot_type":"Full"}`
	}
	for _, tc := range []struct {
		name string
		run  func(s *testServer) req
		why  []string
	}{
		{"InstanceStart before boot-source", func(s *testServer) req {
			s.ok("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":8}`)
			return req{"PUT", "/actions", `{"action_type":"InstanceStart"}`}
		}, []string{"boot-source"}},
		{"machine-config after start", func(s *testServer) req {
			s.boot(t)
			return req{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":8}`}
		}, []string{"not supported after starting", "pre-boot only"}},
		{"drive after start", func(s *testServer) req {
			s.boot(t)
			return req{"PUT", "/drives/data", `{"drive_id":"data","path_on_host":"/d","is_root_device":false}`}
		}, []string{"pre-boot only"}},
		{"InstanceStart twice", func(s *testServer) req {
			s.boot(t)
			return req{"PUT", "/actions", `{"action_type":"InstanceStart"}`}
		}, []string{"already started", "only once"}},
		{"snapshot while running", func(s *testServer) req {
			s.boot(t)
			return req{"PUT", "/snapshot/create", create(s.dir)}
		}, []string{"must be Paused", "Running"}},
		{"snapshot before boot", func(s *testServer) req {
			return req{"PUT", "/snapshot/create", create(s.dir)}
		}, []string{"neither started nor restored"}},
		{"load after machine-config", func(s *testServer) req {
			s.ok("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":8}`)
			return req{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_file_path":"/m"}`}
		}, []string{"fresh Firecracker process"}},
		{"load after start", func(s *testServer) req {
			s.boot(t)
			return req{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_file_path":"/m"}`}
		}, []string{"after the microVM was started"}},
		{"load with both memory sources", func(s *testServer) req {
			return req{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_file_path":"/m","mem_backend":{"backend_type":"File","backend_path":"/m"}}`}
		}, []string{"exactly one of mem_backend and mem_file_path"}},
		{"load without memory", func(s *testServer) req {
			return req{"PUT", "/snapshot/load", `{"snapshot_path":"/s"}`}
		}, []string{"exactly one of mem_backend and mem_file_path"}},
		{"mmds/config naming an unknown iface", func(s *testServer) req {
			s.ok("PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0"}`)
			return req{"PUT", "/mmds/config", `{"version":"V2","network_interfaces":["eth0","eth1"]}`}
		}, []string{`"eth1"`, "does not exist"}},
		{"Diff without dirty tracking", func(s *testServer) req {
			s.ok("PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":8}`)
			s.ok("PUT", "/boot-source", `{"kernel_image_path":"/k"}`)
			s.ok("PUT", "/actions", `{"action_type":"InstanceStart"}`)
			s.ok("PATCH", "/vm", `{"state":"Paused"}`)
			return req{"PUT", "/snapshot/create", `{"snapshot_path":"` + s.dir + `/s","mem_file_path":"` + s.dir + `/m","snapshot_type":"Diff"}`}
		}, []string{"Diff", "track_dirty_pages"}},
		{"pause before start", func(s *testServer) req {
			return req{"PATCH", "/vm", `{"state":"Paused"}`}
		}, []string{"before starting the microVM"}},
		{"patch drive before start", func(s *testServer) req {
			return req{"PATCH", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/x"}`}
		}, []string{"post-boot only"}},
		{"second root drive", func(s *testServer) req {
			s.ok("PUT", "/drives/a", `{"drive_id":"a","path_on_host":"/a","is_root_device":true}`)
			return req{"PUT", "/drives/b", `{"drive_id":"b","path_on_host":"/b","is_root_device":true}`}
		}, []string{"root block device already exists"}},
		{"spec violation", func(s *testServer) req {
			return req{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":8,"memory":1}`}
		}, []string{`unknown field "memory"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "")
			r := tc.run(s)
			s.refused(r.method, r.path, r.body, tc.why...)
			v := s.Violations()
			if len(v) != 1 || !strings.Contains(v[0], r.path) {
				t.Fatalf("violations = %q", v)
			}
			entries, err := ReadJournal(s.journal)
			if err != nil {
				t.Fatal(err)
			}
			last := entries[len(entries)-1]
			if last.Method != r.method || last.Path != r.path || last.Status != 400 || !strings.Contains(v[0], last.Fault) || last.Fault == "" {
				t.Fatalf("last journal entry = %+v, violation %q", last, v[0])
			}
		})
	}
}

// snapshotFull boots a VM in a new server and takes a Full snapshot into dir.
func snapshotFull(t *testing.T, dir string) (state, mem string) {
	src := startServer(t, dir)
	src.boot(t)
	src.ok("PATCH", "/vm", `{"state":"Paused"}`)
	state, mem = filepath.Join(dir, "state"), filepath.Join(dir, "mem")
	src.ok("PUT", "/snapshot/create", `{"snapshot_path":"`+state+`","mem_file_path":"`+mem+`"}`)
	src.noViolations(t)
	return state, mem
}

func TestFullSnapshotRoundTripThroughFile(t *testing.T) {
	dir := t.TempDir()
	state, mem := snapshotFull(t, dir)

	dst := startServer(t, t.TempDir())
	dst.ok("PUT", "/logger", `{"level":"Warning"}`) // allowed before a load
	dst.ok("PUT", "/snapshot/load", `{"snapshot_path":"`+state+`","mem_backend":{"backend_type":"File","backend_path":"`+mem+`"},"track_dirty_pages":true}`)
	if got := dst.ok("GET", "/", "")["state"]; got != "Paused" {
		t.Fatalf("state after load = %v", got)
	}
	if mc := dst.ok("GET", "/machine-config", ""); mc["mem_size_mib"] != float64(testMemMiB) || mc["vcpu_count"] != float64(2) {
		t.Fatalf("machine-config after load = %v", mc)
	}
	if d := dst.ok("GET", "/mmds", ""); len(d) != 0 {
		t.Fatalf("MMDS data survived the load: %v", d)
	}
	dst.refused("PUT", "/drives/x", `{"drive_id":"x","path_on_host":"/x","is_root_device":false}`, "pre-boot only")
	dst.refused("PUT", "/actions", `{"action_type":"InstanceStart"}`, "restored from a snapshot")
	dst.ok("PATCH", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/img/new.ext4"}`)
	dst.ok("PUT", "/mmds", `{"instanceID":"sbx-3"}`)
	dst.ok("PATCH", "/vm", `{"state":"Resumed"}`)
	if got := dst.ok("GET", "/", "")["state"]; got != "Running" {
		t.Fatalf("state after resume = %v", got)
	}
	dst.ok("PATCH", "/vm", `{"state":"Paused"}`)
	// A Diff since the load, merged onto the Full it was loaded from, loads again.
	dst.ok("PUT", "/snapshot/create", `{"snapshot_path":"`+dir+`/state2","mem_file_path":"`+mem+`","snapshot_type":"Diff"}`)
	if len(dst.Violations()) != 2 {
		t.Fatalf("violations = %q", dst.Violations())
	}
	again := startServer(t, t.TempDir())
	again.ok("PUT", "/snapshot/load", `{"snapshot_path":"`+dir+`/state2","mem_file_path":"`+mem+`","resume_vm":true}`)
	if got := again.ok("GET", "/", "")["state"]; got != "Running" {
		t.Fatalf("state after load with resume_vm = %v", got)
	}
	again.noViolations(t)
}

func TestLoadFailuresExit(t *testing.T) {
	dir := t.TempDir()
	state, mem := snapshotFull(t, dir)
	corrupt := filepath.Join(dir, "corrupt")
	os.WriteFile(corrupt, []byte("{not json"), 0o644)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, make([]byte, PageSize), 0o644)
	other := filepath.Join(dir, "other")
	os.WriteFile(other, make([]byte, testMemMiB<<20), 0o644) // right size, wrong contents
	for _, tc := range []struct{ body, why string }{
		{`{"snapshot_path":"` + dir + `/missing","mem_file_path":"` + mem + `"}`, "cannot read the snapshot state file"},
		{`{"snapshot_path":"` + corrupt + `","mem_file_path":"` + mem + `"}`, "corrupt"},
		{`{"snapshot_path":"` + state + `","mem_file_path":"` + dir + `/nomem"}`, "cannot open the memory file"},
		{`{"snapshot_path":"` + state + `","mem_file_path":"` + short + `"}`, "has 4096 bytes"},
		{`{"snapshot_path":"` + state + `","mem_file_path":"` + other + `"}`, "differs from the snapshot"},
		{`{"snapshot_path":"` + state + `","mem_file_path":"` + mem + `","network_overrides":[{"iface_id":"eth9","host_dev_name":"tap9"}]}`, `"eth9"`},
	} {
		s := startServer(t, t.TempDir())
		s.refused("PUT", "/snapshot/load", tc.body, tc.why)
		select {
		case <-s.Exit():
			if s.ExitCode() != 1 {
				t.Errorf("exit code %d after a failed load", s.ExitCode())
			}
		default:
			t.Errorf("%s: the stand-in does not exit after a failed load, as Firecracker does", tc.why)
		}
	}
}

func TestCtrlAltDelExits(t *testing.T) {
	s := startServer(t, "")
	s.refused("PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`, "before starting")
	s.boot(t)
	s.ok("PATCH", "/vm", `{"state":"Paused"}`)
	s.ok("PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`)
	select {
	case <-s.Exit():
		t.Fatal("a paused guest reacted to Ctrl+Alt+Del")
	default:
	}
	s.ok("PATCH", "/vm", `{"state":"Resumed"}`)
	select {
	case <-s.Exit():
	default:
		t.Fatal("no exit after Ctrl+Alt+Del reached a running guest")
	}
	if s.ExitCode() != 0 {
		t.Fatalf("exit code %d", s.ExitCode())
	}
}
