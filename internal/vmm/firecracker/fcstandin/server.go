package fcstandin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Version is the Firecracker release the stand-in claims to be.
const Version = "1.16.1"

// SnapshotVersion is the snapshot format version `--snapshot-version` prints (that of
// Firecracker 1.16).
const SnapshotVersion = "8.0.0"

// maxPayload is Firecracker's default --http-api-max-payload-size.
const maxPayload = 51200

// Server is the stand-in's API: an http.Handler that checks each request against the
// Spec, then against Firecracker's call-order rules, then applies it to a simulated VM.
// Every request is journaled; every refusal (400 {"fault_message"}) is also recorded
// as a violation. Requests are handled one at a time, as Firecracker does.
type Server struct {
	spec    *Spec
	id      string
	journal *journal

	// UffdTimeout bounds how long a UFFD-backed snapshot load waits for the handler to
	// serve every page (default 30 s).
	UffdTimeout time.Duration

	mu         sync.Mutex
	violations []string
	exit       chan struct{}
	exitCode   int
	exiting    bool

	logger, metrics   bool
	configured        bool // something besides logger and metrics was configured
	started, loaded   bool
	paused            bool
	ctrlAltDelPending bool
	machine           machineConfig
	bootSource        json.RawMessage
	drives            map[string]json.RawMessage
	rootDrive         string
	ifaces            map[string]json.RawMessage
	pmem              map[string]bool
	mmdsConfig        json.RawMessage
	mmdsData          any
	vsock, hotplug    bool
	balloon           *balloonState
	mem               *guestMemory
	uffdConn          *net.UnixConn
}

type machineConfig struct {
	VcpuCount       int    `json:"vcpu_count"`
	MemSizeMiB      int    `json:"mem_size_mib"`
	Smt             bool   `json:"smt"`
	TrackDirtyPages bool   `json:"track_dirty_pages"`
	HugePages       string `json:"huge_pages,omitempty"`
	CPUTemplate     string `json:"cpu_template,omitempty"`
}

type balloonState struct {
	AmountMiB         int  `json:"amount_mib"`
	DeflateOnOOM      bool `json:"deflate_on_oom"`
	StatsPollingS     int  `json:"stats_polling_interval_s"`
	FreePageHinting   bool `json:"free_page_hinting"`
	FreePageReporting bool `json:"free_page_reporting"`
}

// NewServer returns a stand-in for the Firecracker instance id, checking against spec
// and appending to the journal file journalPath ("" for none).
func NewServer(spec *Spec, id, journalPath string) (*Server, error) {
	j, err := openJournal(journalPath)
	if err != nil {
		return nil, err
	}
	return &Server{
		spec: spec, id: id, journal: j, UffdTimeout: 30 * time.Second,
		exit:    make(chan struct{}),
		machine: machineConfig{VcpuCount: 1, MemSizeMiB: 128, HugePages: "None"},
		drives:  map[string]json.RawMessage{}, ifaces: map[string]json.RawMessage{}, pmem: map[string]bool{},
	}, nil
}

// Violations returns the fault messages of every request refused so far.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Exit is closed when the process should exit: after SendCtrlAltDel reached a running
// guest (which, booted with reboot=k, shuts down) or after a failed snapshot load
// (Firecracker exits then). ExitCode says with which status.
func (s *Server) Exit() <-chan struct{} { return s.exit }

// ExitCode is the status the process should exit with once Exit is closed.
func (s *Server) ExitCode() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitCode
}

// State is the instance state GET / reports: "Not started", "Running" or "Paused".
func (s *Server) State() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state()
}

func (s *Server) state() string {
	switch {
	case !s.started && !s.loaded:
		return "Not started"
	case s.paused:
		return "Paused"
	}
	return "Running"
}

// Close releases the simulated memory, the UFFD connection and the journal.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uffdConn != nil {
		s.uffdConn.Close()
		s.uffdConn = nil
	}
	err := s.mem.close()
	s.mem = nil
	if jerr := s.journal.close(); err == nil {
		err = jerr
	}
	return err
}

func (s *Server) exitWith(code int) {
	if !s.exiting {
		s.exiting, s.exitCode = true, code
		close(s.exit)
	}
}

// fault is a refused request: its status and Firecracker-style message.
type fault struct {
	status int
	msg    string
}

func (f *fault) Error() string { return f.msg }

func refuse(format string, args ...any) *fault {
	return &fault{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP answers one API request: 400 {"fault_message"} when it breaks the Spec or
// the call order, else 204 (PUT, PATCH) or 200 with JSON (GET).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	path := r.URL.Path
	s.mu.Lock()
	defer s.mu.Unlock()
	var resp any
	var f *fault
	switch {
	case err != nil:
		f = refuse("cannot read the request body: %v", err)
	case len(body) > maxPayload:
		f = &fault{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("Request payload with size %d is larger than the limit of %d allowed by server.", len(body), maxPayload)}
	default:
		if cerr := s.spec.Check(r.Method, path, body); cerr != nil {
			f = refuse("%v", cerr)
		} else {
			tmpl, params, _ := s.spec.match(path)
			resp, f = s.apply(r.Method+" "+tmpl, params, bytes.TrimSpace(body))
		}
	}
	if f != nil {
		s.violations = append(s.violations, r.Method+" "+path+": "+f.msg)
		s.journal.add(r.Method, path, body, f.status, f.msg)
		writeJSON(w, f.status, map[string]string{"fault_message": f.msg})
		return
	}
	if r.Method == http.MethodGet {
		s.journal.add(r.Method, path, body, http.StatusOK, "")
		writeJSON(w, http.StatusOK, resp)
		return
	}
	s.journal.add(r.Method, path, body, http.StatusNoContent, "")
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"fault_message":"cannot encode the response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// preBootOnly refuses a configuration request once the VM was started or restored.
func (s *Server) preBootOnly(op string) *fault {
	if s.started || s.loaded {
		return refuse("%s: the requested operation is not supported after starting the microVM (pre-boot only; the VM was %s)", op, map[bool]string{true: "started", false: "restored from a snapshot"}[s.started])
	}
	return nil
}

// postBootOnly refuses a request that needs a started or restored VM.
func (s *Server) postBootOnly(op string) *fault {
	if !s.started && !s.loaded {
		return refuse("%s: the requested operation is not supported before starting the microVM (post-boot only)", op)
	}
	return nil
}

func decode(body []byte, v any) *fault {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return refuse("cannot decode the body: %v", err)
	}
	return nil
}

// apply enforces the call-order rules for the request op ("PUT /drives/{drive_id}")
// and applies it. GET requests return the JSON to answer.
func (s *Server) apply(op string, params map[string]string, body []byte) (any, *fault) {
	switch op {
	case "GET /":
		return map[string]string{"app_name": "Firecracker", "id": s.id, "state": s.state(), "vmm_version": Version}, nil
	case "GET /version":
		return map[string]string{"firecracker_version": Version}, nil
	case "GET /machine-config":
		return s.machine, nil
	case "GET /vm/config":
		return s.vmConfig(), nil
	case "GET /mmds":
		if s.mmdsData == nil {
			return map[string]any{}, nil
		}
		return s.mmdsData, nil
	case "PUT /mmds":
		var v any = map[string]any{}
		if f := decode(body, &v); f != nil {
			return nil, f
		}
		s.mmdsData = v
		return nil, nil
	case "PATCH /mmds":
		var patch any
		if f := decode(body, &patch); f != nil {
			return nil, f
		}
		s.mmdsData = mergePatch(s.mmdsData, patch)
		return nil, nil
	case "PUT /logger":
		if f := s.preBootOnly(op); f != nil {
			return nil, f
		}
		s.logger = true
		return nil, nil
	case "PUT /metrics":
		if f := s.preBootOnly(op); f != nil {
			return nil, f
		}
		if s.metrics {
			return nil, refuse("%s: reinitialization of metrics is not allowed (already configured)", op)
		}
		s.metrics = true
		return nil, nil
	case "PUT /actions":
		return nil, s.action(body)
	case "PATCH /vm":
		return nil, s.patchVM(body)
	case "PUT /snapshot/create":
		return nil, s.snapshotCreate(body)
	case "PUT /snapshot/load":
		return nil, s.snapshotLoad(body)
	}
	return s.device(op, params, body)
}

func (s *Server) vmConfig() map[string]any {
	out := map[string]any{"machine-config": s.machine}
	if s.bootSource != nil {
		out["boot-source"] = s.bootSource
	}
	var drives, ifaces []json.RawMessage
	for _, d := range s.drives {
		drives = append(drives, d)
	}
	for _, n := range s.ifaces {
		ifaces = append(ifaces, n)
	}
	out["drives"], out["network-interfaces"] = drives, ifaces
	if s.mmdsConfig != nil {
		out["mmds-config"] = s.mmdsConfig
	}
	if s.balloon != nil {
		out["balloon"] = s.balloon
	}
	return out
}

// mergePatch applies an RFC 7396 JSON merge patch, as PATCH /mmds does.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
		} else {
			t[k] = mergePatch(t[k], v)
		}
	}
	return t
}

func (s *Server) action(body []byte) *fault {
	var a struct {
		ActionType string `json:"action_type"`
	}
	if f := decode(body, &a); f != nil {
		return f
	}
	op := "InstanceStart"
	switch a.ActionType {
	case "InstanceStart":
		switch {
		case s.started:
			return refuse("%s: the microVM was already started; InstanceStart is allowed only once", op)
		case s.loaded:
			return refuse("%s: the microVM was restored from a snapshot; resume it with PATCH /vm instead", op)
		case s.bootSource == nil:
			return refuse("%s: cannot start the microVM without a kernel: PUT /boot-source first", op)
		}
		m, err := newAnonMemory(s.machine.MemSizeMiB << 20)
		if err != nil {
			return refuse("%s: %v", op, err)
		}
		s.mem, s.started, s.paused = m, true, false
		s.mem.run() // what the guest writes after boot goes into the first Diff
	case "SendCtrlAltDel":
		if f := s.postBootOnly("SendCtrlAltDel"); f != nil {
			return f
		}
		if s.paused {
			s.ctrlAltDelPending = true // the guest reacts once resumed
		} else {
			s.exitWith(0)
		}
	case "FlushMetrics":
		if !s.metrics {
			return refuse("FlushMetrics: the metrics system is not initialized (PUT /metrics first)")
		}
	}
	return nil
}

func (s *Server) patchVM(body []byte) *fault {
	var v struct {
		State string `json:"state"`
	}
	if f := decode(body, &v); f != nil {
		return f
	}
	if f := s.postBootOnly("PATCH /vm " + v.State); f != nil {
		return f
	}
	switch v.State {
	case "Paused":
		s.paused = true
	case "Resumed":
		if s.paused {
			s.paused = false
			s.mem.run()
			if s.ctrlAltDelPending {
				s.exitWith(0)
			}
		}
	}
	return nil
}
