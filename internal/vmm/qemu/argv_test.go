package qemu

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// testFiles makes a Dir and dummy kernel, initrd and disk files.
func testFiles(t *testing.T) vmm.Config {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "vm")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"vmlinux", "initrd.img", "rootfs.ext4"} {
		if err := os.WriteFile(filepath.Join(base, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return vmm.Config{
		ID:        "sb0123456789abcdefgh",
		Dir:       dir,
		Kernel:    filepath.Join(base, "vmlinux"),
		Initrd:    filepath.Join(base, "initrd.img"),
		Disk:      filepath.Join(base, "rootfs.ext4"),
		VCPUs:     2,
		MemoryMiB: 512,
	}
}

func testNet() *vmm.NetConfig {
	return &vmm.NetConfig{
		TAP:     "tap0",
		MAC:     "02:FC:00:00:00:05",
		GuestIP: netip.MustParsePrefix("169.254.0.21/30"),
		Gateway: netip.MustParseAddr("169.254.0.22"),
		DNS:     []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("9.9.9.9")},
	}
}

// flagValue returns the argument after the first occurrence of flag.
func flagValue(t *testing.T, argv []string, flag string) string {
	t.Helper()
	i := slices.Index(argv, flag)
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("argv has no %s: %q", flag, argv)
	}
	return argv[i+1]
}

func flagValues(argv []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag {
			out = append(out, argv[i+1])
		}
	}
	return out
}

func TestBuildArgv(t *testing.T) {
	cfg := testFiles(t)
	cfg.Net = testNet()
	cfg.KernelArgs = []string{"wrenn.hostname=sb1", "init=/sbin/wrenn-init"}
	s, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	argv, err := buildArgv("/usr/bin/qemu-system-x86_64", false, 2096010, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("argv: %q", argv)
	if argv[0] != "/usr/bin/qemu-system-x86_64" {
		t.Errorf("argv[0] = %q", argv[0])
	}
	for _, a := range argv {
		if a == "sh" || a == "-c" || strings.HasSuffix(a, "/sh") || strings.HasSuffix(a, "bash") {
			t.Errorf("shell-looking argument %q", a)
		}
	}
	for _, f := range []string{"-nodefaults", "-no-user-config", "-nographic", "-no-reboot"} {
		if !slices.Contains(argv, f) {
			t.Errorf("missing %s", f)
		}
	}
	want := map[string]string{
		"-M":       "microvm,pit=on,pic=on,rtc=on,memory-backend=mem",
		"-object":  "memory-backend-file,id=mem,size=512M,mem-path=" + filepath.Join(cfg.Dir, "memory") + ",share=on,prealloc=off",
		"-accel":   "tcg,tb-size=128",
		"-cpu":     "max",
		"-smp":     "2",
		"-m":       "512",
		"-name":    cfg.ID,
		"-sandbox": "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel":  cfg.Kernel,
		"-initrd":  cfg.Initrd,
		"-serial":  "chardev:console",
		"-pidfile": filepath.Join(cfg.Dir, "qemu.pid"),
		"-mon":     "chardev=qmp,mode=control",
	}
	for f, v := range want {
		if got := flagValue(t, argv, f); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}
	chardevs := flagValues(argv, "-chardev")
	wantChardevs := []string{
		"file,id=console,path=" + filepath.Join(cfg.Dir, "console.log"),
		"socket,id=qmp,fd=3,server=on,wait=off",
	}
	if !slices.Equal(chardevs, wantChardevs) {
		t.Errorf("chardevs %q, want %q", chardevs, wantChardevs)
	}
	if got, want := flagValue(t, argv, "-drive"), "id=root,if=none,file="+cfg.Disk+",format=raw,cache=writeback,aio=threads,discard=unmap"; got != want {
		t.Errorf("-drive %q, want %q", got, want)
	}
	cfg.DiskRate = vmm.RateLimit{BytesPerSec: 64 << 20, OpsPerSec: 2000}
	if s, err = validate(cfg); err != nil {
		t.Fatal(err)
	}
	limited, err := buildArgv("/usr/bin/qemu-system-x86_64", false, 2096010, s)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := flagValue(t, limited, "-drive"), "id=root,if=none,file="+cfg.Disk+
		",format=raw,cache=writeback,aio=threads,discard=unmap,throttling.bps-total=67108864,throttling.iops-total=2000"; got != want {
		t.Errorf("rate-limited -drive %q, want %q", got, want)
	}
	devs := flagValues(argv, "-device")
	wantDevs := []string{"virtio-blk-device,drive=root", "virtio-net-device,netdev=net0,mac=02:fc:00:00:00:05"}
	if !slices.Equal(devs, wantDevs) {
		t.Errorf("devices %q, want %q", devs, wantDevs)
	}
	if got := flagValue(t, argv, "-netdev"); got != "tap,id=net0,fd=4" {
		t.Errorf("-netdev %q", got)
	}
	wantAppend := "console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=2096010 " +
		"wrenn.ip=169.254.0.21/30 wrenn.gw=169.254.0.22 wrenn.dns=1.1.1.1,9.9.9.9 " +
		"wrenn.hostname=sb1 init=/sbin/wrenn-init"
	if got := flagValue(t, argv, "-append"); got != wantAppend {
		t.Errorf("-append\n got %q\nwant %q", got, wantAppend)
	}
}

func TestBuildArgvMinimal(t *testing.T) {
	cfg := testFiles(t)
	cfg.Initrd, cfg.Disk = "", ""
	s, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	argv, err := buildArgv("/q", true, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"-initrd", "-drive", "-netdev", "-device", "-incoming", "-S"} {
		if slices.Contains(argv, f) {
			t.Errorf("unexpected %s in %q", f, argv)
		}
	}
	if got := flagValue(t, argv, "-append"); got != "console=ttyS0 reboot=t panic=-1 quiet" {
		t.Errorf("-append %q (unknown TSC must omit tsc_early_khz)", got)
	}
	if flagValue(t, argv, "-accel") != "kvm" || flagValue(t, argv, "-cpu") != "host" {
		t.Errorf("kvm argv: %q", argv)
	}
}

func TestCommaEscaping(t *testing.T) {
	cfg := testFiles(t)
	disk := filepath.Join(filepath.Dir(cfg.Disk), "a,b.ext4")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Disk = disk
	s, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	argv, err := buildArgv("/q", false, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	if got := flagValue(t, argv, "-drive"); !strings.Contains(got, "file="+strings.ReplaceAll(disk, ",", ",,")+",format=raw") {
		t.Errorf("-drive %q: comma not doubled", got)
	}
}

func TestAccelSelection(t *testing.T) {
	cases := []struct {
		accel string
		kvmOK bool
		want  string
	}{
		{"auto", true, "kvm"},
		{"auto", false, "tcg"},
		{"", false, "tcg"},
		{"tcg", true, "tcg"},
		{"kvm", false, "kvm"}, // forced: QEMU reports the problem
	}
	for _, c := range cases {
		d := New(Options{Accel: c.accel})
		d.kvmUsable = func() bool { return c.kvmOK }
		got, err := d.Accel()
		if err != nil || got != c.want {
			t.Errorf("accel %q kvm=%v: got %q, %v; want %q", c.accel, c.kvmOK, got, err, c.want)
		}
	}
	d := New(Options{Accel: "hvf"})
	if _, err := d.Accel(); err == nil {
		t.Error("accel hvf accepted")
	}
}

func TestValidateRejects(t *testing.T) {
	long := t.TempDir() + "/" + strings.Repeat("d", 100)
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(c *vmm.Config){
		"empty id":           func(c *vmm.Config) { c.ID = "" },
		"upper id":           func(c *vmm.Config) { c.ID = "SB1" },
		"id with slash":      func(c *vmm.Config) { c.ID = "../x" },
		"id with space":      func(c *vmm.Config) { c.ID = "a b" },
		"long id":            func(c *vmm.Config) { c.ID = strings.Repeat("a", 64) },
		"zero vcpus":         func(c *vmm.Config) { c.VCPUs = 0 },
		"negative disk rate": func(c *vmm.Config) { c.DiskRate.BytesPerSec = -1 },
		"negative disk ops":  func(c *vmm.Config) { c.DiskRate.OpsPerSec = -1 },
		"tiny memory":        func(c *vmm.Config) { c.MemoryMiB = 1 },
		"missing dir":        func(c *vmm.Config) { c.Dir += "-nope" },
		"dir is file":        func(c *vmm.Config) { c.Dir = c.Kernel },
		"long dir":           func(c *vmm.Config) { c.Dir = long },
		"missing kernel":     func(c *vmm.Config) { c.Kernel += "-nope" },
		"kernel is dir":      func(c *vmm.Config) { c.Kernel = c.Dir },
		"empty kernel":       func(c *vmm.Config) { c.Kernel = "" },
		"missing initrd":     func(c *vmm.Config) { c.Initrd += "-nope" },
		"missing disk":       func(c *vmm.Config) { c.Disk += "-nope" },
		"newline in path":    func(c *vmm.Config) { c.Disk += "\n" },
		"arg with space":     func(c *vmm.Config) { c.KernelArgs = []string{"a b"} },
		"arg with quote":     func(c *vmm.Config) { c.KernelArgs = []string{`init="/x"`} },
		"arg with squote":    func(c *vmm.Config) { c.KernelArgs = []string{`x='y'`} },
		"arg with newline":   func(c *vmm.Config) { c.KernelArgs = []string{"a\nb"} },
		"empty arg":          func(c *vmm.Config) { c.KernelArgs = []string{""} },
		"double dash":        func(c *vmm.Config) { c.KernelArgs = []string{"--"} },
		"non-ascii arg":      func(c *vmm.Config) { c.KernelArgs = []string{"x=é"} },
		"tap too long":       func(c *vmm.Config) { c.Net = testNet(); c.Net.TAP = "tap0123456789abcd" },
		"tap with comma":     func(c *vmm.Config) { c.Net = testNet(); c.Net.TAP = "tap0,script=/x" },
		"empty tap":          func(c *vmm.Config) { c.Net = testNet(); c.Net.TAP = "" },
		"bad mac":            func(c *vmm.Config) { c.Net = testNet(); c.Net.MAC = "02:fc:00,id=x" },
		"long mac":           func(c *vmm.Config) { c.Net = testNet(); c.Net.MAC = "02:00:5e:10:00:00:00:01" },
		"multicast mac":      func(c *vmm.Config) { c.Net = testNet(); c.Net.MAC = "01:00:00:00:00:01" },
		"missing netns":      func(c *vmm.Config) { c.Net = testNet(); c.Net.NetNS = "/var/run/netns/wrenn-no-such-ns" },
		"ip without gw":      func(c *vmm.Config) { c.Net = testNet(); c.Net.Gateway = netip.Addr{} },
		"invalid dns":        func(c *vmm.Config) { c.Net = testNet(); c.Net.DNS = []netip.Addr{{}} },
		"huge command line":  func(c *vmm.Config) { c.KernelArgs = []string{"x=" + strings.Repeat("y", 2100)} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testFiles(t)
			mutate(&cfg)
			s, err := validate(cfg)
			if err == nil {
				_, err = buildArgv("/q", false, 2096010, s)
			}
			if err == nil {
				t.Fatalf("accepted %+v", cfg)
			}
			t.Log(err)
		})
	}
}

func TestTSCParsing(t *testing.T) {
	amdVM := "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2096.010\n\nprocessor\t: 1\ncpu MHz\t\t: 1500.000\n"
	if got := tscFromCPUInfo(strings.NewReader(amdVM), true); got != 2096010 {
		t.Errorf("no cpufreq: got %d, want 2096010", got)
	}
	if got := tscFromCPUInfo(strings.NewReader(amdVM), false); got != 0 {
		t.Errorf("cpufreq host without nominal rate: got %d, want 0", got)
	}
	intel := "model name\t: Intel(R) Xeon(R) Gold 6252 CPU @ 2.10GHz\ncpu MHz\t\t: 3700.123\n"
	if got := tscFromCPUInfo(strings.NewReader(intel), false); got != 2100000 {
		t.Errorf("intel with cpufreq: got %d, want 2100000", got)
	}
	klog := "[    0.000259] tsc: Detected 2096.010 MHz processor\n[    1.2] tsc: Refined TSC clocksource calibration: 2095.998 MHz\n"
	if got := tscFromKernelLog([]byte(klog)); got != 2095998 {
		t.Errorf("kernel log: got %d, want 2095998", got)
	}
	if got := tscFromKernelLog([]byte(strings.SplitN(klog, "\n", 2)[0])); got != 2096010 {
		t.Errorf("kernel log without refinement: got %d", got)
	}
	if got := tscFromKernelLog([]byte("nothing")); got != 0 {
		t.Errorf("empty kernel log: got %d", got)
	}
	t.Logf("this host: tsc %d kHz, kvm usable %v", hostTSCKHz(), vmproc.KVMUsable())
}

// A restore's argv is a start's plus -incoming defer and -S, with the console log
// continued; its hardware arguments are the same, and they leave out per-VM paths.
func TestRestoreArgvAndMachineArgs(t *testing.T) {
	cfg := testFiles(t)
	cfg.Net = testNet()
	s, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start, err := buildArgv("/q", false, 2096010, s)
	if err != nil {
		t.Fatal(err)
	}
	s.incoming = true
	restore, err := buildArgv("/q", false, 2096010, s)
	if err != nil {
		t.Fatal(err)
	}
	if got := restore[len(restore)-3:]; !slices.Equal(got, []string{"-incoming", "defer", "-S"}) {
		t.Errorf("restore argv ends %q", got)
	}
	if got := flagValues(restore, "-chardev")[0]; !strings.HasSuffix(got, ",append=on") {
		t.Errorf("restore console %q does not append", got)
	}
	want := []string{
		"-M", "microvm,pit=on,pic=on,rtc=on,memory-backend=mem",
		"-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "512",
		"-object", "memory-backend-file,id=mem,size=512M,share=on,prealloc=off",
		"-device", "virtio-blk-device,drive=root",
		"-device", "virtio-net-device,netdev=net0,mac=02:fc:00:00:00:05",
	}
	if got := machineArgs(start); !slices.Equal(got, want) {
		t.Errorf("machine args\n got %q\nwant %q", got, want)
	}
	if got := machineArgs(restore); !slices.Equal(got, want) {
		t.Errorf("restore machine args %q", got)
	}
	// Another VM of the same shape in another Dir compares equal.
	other := testFiles(t)
	other.Net = testNet()
	so, _ := validate(other)
	otherArgv, _ := buildArgv("/q", false, 2096010, so)
	if !slices.Equal(machineArgs(otherArgv), want) {
		t.Errorf("machine args depend on the Dir: %q", machineArgs(otherArgv))
	}
	if got := dropOption("a=1,mem-path=/x,,y,b=2", "mem-path"); got != "a=1,b=2" {
		t.Errorf("dropOption with an escaped comma: %q", got)
	}
}
