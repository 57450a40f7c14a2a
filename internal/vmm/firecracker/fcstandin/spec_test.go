package fcstandin

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// specPath is Firecracker's Swagger document, kept unmodified beside the checkout
// (../shared/specs/upstream); "" when this checkout has no shared/ beside it.
func specPath() string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "..", "shared", "specs", "upstream", "firecracker-swagger.yaml")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

var (
	specOnce   sync.Once
	loadedSpec *Spec
	specErr    error
)

// testSpec loads the Swagger document once, skipping the test where it is absent.
func testSpec(t *testing.T) *Spec {
	t.Helper()
	p := specPath()
	if p == "" {
		t.Skip("Firecracker's Swagger document is not at ../shared/specs/upstream/firecracker-swagger.yaml beside the checkout (a clone without shared/)")
	}
	specOnce.Do(func() { loadedSpec, specErr = LoadSpec(p) })
	if specErr != nil {
		t.Fatal(specErr)
	}
	return loadedSpec
}

type req struct{ method, path, body string }

// validRequests is what a driver sends to boot, configure, pause, snapshot and restore.
var validRequests = []req{
	{"GET", "/", ""},
	{"GET", "/version", ""},
	{"PUT", "/logger", `{"log_path":"/tmp/fc.log","level":"Debug","show_level":true,"show_log_origin":false}`},
	{"PUT", "/logger", `{"level":"debug"}`}, // the level is case-insensitive
	{"PUT", "/metrics", `{"metrics_path":"/tmp/fc.metrics"}`},
	{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":512,"smt":false,"track_dirty_pages":true}`},
	{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128,"huge_pages":"2M"}`},
	{"PATCH", "/machine-config", `{"mem_size_mib":256}`}, // "A subset of" MachineConfiguration
	{"GET", "/machine-config", ""},
	{"PUT", "/boot-source", `{"kernel_image_path":"/k/vmlinux","boot_args":"console=ttyS0 reboot=k panic=1 pci=off","initrd_path":"/k/initrd"}`},
	{"PUT", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/img/rootfs.ext4","is_root_device":true,"is_read_only":false,"cache_type":"Unsafe","io_engine":"Sync"}`},
	{"PUT", "/drives/data", `{"drive_id":"data","path_on_host":"/img/data.ext4","is_root_device":false,"rate_limiter":{"bandwidth":{"size":1048576,"refill_time":1000,"one_time_burst":0},"ops":{"size":100,"refill_time":1000}}}`},
	{"PATCH", "/drives/rootfs", `{"drive_id":"rootfs","path_on_host":"/img/other.ext4"}`},
	{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"02:FC:00:00:00:01","mtu":1500}`},
	{"PATCH", "/network-interfaces/eth0", `{"iface_id":"eth0","rx_rate_limiter":{"ops":{"size":10,"refill_time":100}}}`},
	{"PUT", "/mmds/config", `{"version":"V2","network_interfaces":["eth0"],"ipv4_address":"169.254.169.254"}`},
	{"PUT", "/mmds", `{"instanceID":"sbx-1","envID":"tpl","address":"10.0.0.1","accessTokenHash":"x","nested":{"a":[1,2]}}`},
	{"PATCH", "/mmds", `{"address":"10.0.0.2"}`},
	{"GET", "/mmds", ""},
	{"PUT", "/entropy", `{}`},
	{"PUT", "/entropy", `{"rate_limiter":{"bandwidth":{"size":1000,"refill_time":100}}}`},
	{"PUT", "/balloon", `{"amount_mib":0,"deflate_on_oom":true,"stats_polling_interval_s":1}`},
	{"PATCH", "/balloon", `{"amount_mib":64}`},
	{"GET", "/balloon", ""},
	{"GET", "/balloon/statistics", ""},
	{"PATCH", "/balloon/statistics", `{"stats_polling_interval_s":5}`},
	{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"/tmp/v.sock"}`},
	{"PUT", "/actions", `{"action_type":"InstanceStart"}`},
	{"PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`},
	{"PUT", "/actions", `{"action_type":"FlushMetrics"}`},
	{"PATCH", "/vm", `{"state":"Paused"}`},
	{"PATCH", "/vm", `{"state":"Resumed"}`},
	{"PUT", "/snapshot/create", `{"snapshot_path":"/s/state","mem_file_path":"/s/mem"}`},
	{"PUT", "/snapshot/create", `{"snapshot_path":"/s/state","mem_file_path":"/s/mem","snapshot_type":"Full"}`},
	{"PUT", "/snapshot/create", `{"snapshot_path":"/s/state","mem_file_path":"/s/mem","snapshot_type":"Diff"}`},
	{"PUT", "/snapshot/load", `{"snapshot_path":"/s/state","mem_backend":{"backend_type":"Uffd","backend_path":"/s/uffd.sock"},"track_dirty_pages":true,"resume_vm":false}`},
	{"PUT", "/snapshot/load", `{"snapshot_path":"/s/state","mem_backend":{"backend_type":"File","backend_path":"/s/mem"},"resume_vm":true,"network_overrides":[{"iface_id":"eth0","host_dev_name":"tap9"}],"vsock_override":{"uds_path":"/tmp/v2.sock"},"clock_realtime":true}`},
	{"PUT", "/snapshot/load", `{"snapshot_path":"/s/state","mem_file_path":"/s/mem","enable_diff_snapshots":true}`},
	{"GET", "/vm/config", ""},
	{"PUT", "/snapshot/load?x=1", `{"snapshot_path":"/s/state","mem_file_path":"/s/mem"}`},
}

func TestCheckAcceptsValidRequests(t *testing.T) {
	s := testSpec(t)
	for _, r := range validRequests {
		if err := s.Check(r.method, r.path, []byte(r.body)); err != nil {
			t.Errorf("%s %s %s: %v", r.method, r.path, r.body, err)
		}
	}
}

func TestCheckRefusesInvalidRequests(t *testing.T) {
	s := testSpec(t)
	for _, tc := range []struct {
		name string
		req
		want []string // substrings of the error
	}{
		{"unknown path", req{"PUT", "/machine-configs", `{}`}, []string{"unknown path", "/machine-configs"}},
		{"unknown nested path", req{"GET", "/drives/a/b", ``}, []string{"unknown path"}},
		{"method not allowed", req{"GET", "/boot-source", ``}, []string{"GET", "not allowed", "/boot-source", "PUT"}},
		{"missing body", req{"PUT", "/actions", ``}, []string{"required but missing", "InstanceActionInfo"}},
		{"missing required field", req{"PUT", "/machine-config", `{"vcpu_count":2}`}, []string{`missing required field "mem_size_mib"`, "MachineConfiguration"}},
		{"nested missing field", req{"PUT", "/drives/d", `{"drive_id":"d","is_root_device":false,"path_on_host":"/x","rate_limiter":{"ops":{"size":1}}}`}, []string{"body.rate_limiter.ops", `"refill_time"`}},
		{"wrong type string", req{"PUT", "/machine-config", `{"vcpu_count":"2","mem_size_mib":128}`}, []string{"body.vcpu_count", "want", "integer", `string "2"`}},
		{"wrong type bool", req{"PUT", "/drives/d", `{"drive_id":"d","is_root_device":"yes","path_on_host":"/x"}`}, []string{"body.is_root_device", "boolean"}},
		{"not an integer", req{"PUT", "/machine-config", `{"vcpu_count":1.5,"mem_size_mib":128}`}, []string{"body.vcpu_count", "integer", "1.5"}},
		{"wrong type array", req{"PUT", "/mmds/config", `{"network_interfaces":"eth0"}`}, []string{"body.network_interfaces", "array"}},
		{"wrong item type", req{"PUT", "/mmds/config", `{"network_interfaces":[1]}`}, []string{"body.network_interfaces[0]", "string"}},
		{"unknown field", req{"PUT", "/boot-source", `{"kernel_image_path":"/k","initrd":"/i"}`}, []string{`unknown field "initrd"`, "BootSource", "initrd_path"}},
		{"nested unknown field", req{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_backend":{"backend_type":"File","backend_path":"/m","readonly":true}}`}, []string{"body.mem_backend", `unknown field "readonly"`}},
		{"out of enum", req{"PUT", "/snapshot/create", `{"snapshot_path":"/s","mem_file_path":"/m","snapshot_type":"Incremental"}`}, []string{"body.snapshot_type", `"Incremental"`, "Full", "Diff"}},
		{"action out of enum", req{"PUT", "/actions", `{"action_type":"Reboot"}`}, []string{"body.action_type", "Reboot", "InstanceStart"}},
		{"partial still typed", req{"PATCH", "/machine-config", `{"mem_size_mib":256,"memory":1}`}, []string{`unknown field "memory"`}},
		{"ref enum", req{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128,"cpu_template":"M5"}`}, []string{"body.cpu_template", "CpuTemplate"}},
		{"below minimum", req{"PUT", "/machine-config", `{"vcpu_count":0,"mem_size_mib":128}`}, []string{"body.vcpu_count", "below the minimum 1"}},
		{"above maximum", req{"PUT", "/machine-config", `{"vcpu_count":33,"mem_size_mib":128}`}, []string{"body.vcpu_count", "above the maximum 32"}},
		{"vsock cid", req{"PUT", "/vsock", `{"guest_cid":2,"uds_path":"/v"}`}, []string{"body.guest_cid", "minimum 3"}},
		{"path id differs", req{"PUT", "/drives/rootfs", `{"drive_id":"root","is_root_device":true,"path_on_host":"/x"}`}, []string{"drive_id", `"rootfs"`, "root"}},
		{"iface id differs", req{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth1","host_dev_name":"tap0"}`}, []string{"iface_id", `"eth0"`, "eth1"}},
		{"not json", req{"PATCH", "/vm", `{"state":`}, []string{"not valid JSON"}},
		{"trailing data", req{"PATCH", "/vm", `{"state":"Paused"} {}`}, []string{"trailing data"}},
		{"body not an object", req{"PATCH", "/vm", `["Paused"]`}, []string{"want an object", "Vm"}},
		{"body on GET", req{"GET", "/", `{"x":1}`}, []string{"takes no request body"}},
		{"required null", req{"PATCH", "/vm", `{"state":null}`}, []string{`missing required field "state"`}},
		{"metrics properties values", req{"PUT", "/metrics", `{"metrics_path":"/m","properties":{"a":1}}`}, []string{"body.properties.a", "string"}},
	} {
		err := s.Check(tc.method, tc.path, []byte(tc.body))
		if err == nil {
			t.Errorf("%s: %s %s %s was accepted", tc.name, tc.method, tc.path, tc.body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error %q does not mention %q", tc.name, err, w)
			}
		}
	}
}

func TestCheckAllowsNullForOptionalFields(t *testing.T) {
	s := testSpec(t)
	if err := s.Check("PUT", "/boot-source", []byte(`{"kernel_image_path":"/k","initrd_path":null}`)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSpecErrors(t *testing.T) {
	if _, err := LoadSpec(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
	p := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(p, []byte("swagger: \"2.0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSpec(p); err == nil {
		t.Error("a document without paths loaded")
	}
}
