// Package devrun boots one throwaway sandbox end to end — network slot, disk clone,
// microVM, envd /init — runs a command in it and tears everything down. It backs
// `wrenn vm run` and the VM tests; the host agent's sandbox manager does the same steps
// with state, locking and persistence.
package devrun

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/sandboxid"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Config is one run.
type Config struct {
	WrennDir   string // sandboxes/{id}/ is created under it
	TemplateID string // reported to the guest
	Kernel     string
	Initrd     string
	RootFS     string
	VCPUs      int
	MemoryMiB  int
	KernelArgs []string
	// FirstSlot is where the search for a free network slot starts.
	FirstSlot int
	// BootTimeout bounds boot to envd /health.
	BootTimeout time.Duration
	Driver      vmm.Driver
	Net         netslot.Config
	Log         *slog.Logger
}

// Timings splits a sandbox's creation into its steps.
type Timings struct {
	Slot, DiskClone, VMStart, Boot, Init time.Duration
}

// Sandbox is a running throwaway sandbox.
type Sandbox struct {
	ID      string
	Dir     string
	Slot    *netslot.Slot
	Machine vmm.Machine
	Envd    *envdclient.Client
	Timings Timings
	token   string
}

// Start creates a sandbox and waits until envd is initialised. On failure everything
// it made is removed and the error carries the console's tail when the guest booted.
func Start(ctx context.Context, cfg Config) (_ *Sandbox, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 90 * time.Second
	}
	id, err := sandboxid.New()
	if err != nil {
		return nil, err
	}
	sb := &Sandbox{ID: id, Dir: filepath.Join(cfg.WrennDir, "sandboxes", id)}
	defer func() {
		if err != nil {
			if cerr := sb.Close(context.Background()); cerr != nil {
				cfg.Log.Warn("cleanup after failed start", "sandbox", id, "err", cerr)
			}
		}
	}()
	if err := os.MkdirAll(sb.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", sb.Dir, err)
	}

	t0 := time.Now()
	sb.Slot, err = freeSlot(cfg.Net, max(cfg.FirstSlot, 1))
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	disk := filepath.Join(sb.Dir, "rootfs.ext4")
	if _, err := rootfs.Clone(cfg.RootFS, disk); err != nil {
		return nil, err
	}
	t2 := time.Now()
	sb.Machine, err = cfg.Driver.Start(ctx, vmm.Config{
		ID: id, Dir: sb.Dir, Kernel: cfg.Kernel, Initrd: cfg.Initrd, Disk: disk,
		VCPUs: max(cfg.VCPUs, 1), MemoryMiB: max(cfg.MemoryMiB, 256), KernelArgs: cfg.KernelArgs,
		Net: &vmm.NetConfig{
			NetNS: sb.Slot.NetNSPath(), TAP: netslot.TapName, MAC: netslot.GuestMAC.String(),
			GuestIP: netslot.GuestIP, Gateway: netslot.TapIP.Addr(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start vm %s: %w", id, err)
	}
	t3 := time.Now()
	sb.Envd = envdclient.New("http://"+netip.AddrPortFrom(sb.Slot.HostIP, envdapi.Port).String(), "", &http.Client{Transport: &http.Transport{DisableCompression: true}})
	if err := waitBoot(ctx, cfg.BootTimeout, sb); err != nil {
		return nil, err
	}
	t4 := time.Now()
	sb.token, err = randomHex(16)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	if err := sb.Envd.Init(ctx, envdapi.InitRequest{
		AccessToken: &sb.token, DefaultUser: "user", DefaultWorkdir: "/home/user",
		Timestamp: &now, SandboxID: id, TemplateID: cfg.TemplateID, Hostname: id, RandomSeed: seed,
		EnvVars: map[string]string{},
	}); err != nil {
		return nil, err
	}
	sb.Timings = Timings{Slot: t1.Sub(t0), DiskClone: t2.Sub(t1), VMStart: t3.Sub(t2), Boot: t4.Sub(t3), Init: time.Since(t4)}
	return sb, nil
}

// waitBoot waits for envd's /health while watching the VM: a VM that dies while
// booting fails at once with its console's tail, not at the timeout.
func waitBoot(ctx context.Context, timeout time.Duration, sb *Sandbox) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	healthy := make(chan error, 1)
	go func() { healthy <- sb.Envd.WaitHealthy(ctx) }()
	select {
	case err := <-healthy:
		if err != nil {
			return fmt.Errorf("boot %s: %w\nconsole:\n%s", sb.ID, err, vmm.ConsoleTail(sb.Machine.ConsoleLog(), 30))
		}
		return nil
	case <-sb.Machine.Done():
		cancel()
		<-healthy
		return fmt.Errorf("boot %s: vm exited: %v\nconsole:\n%s", sb.ID, sb.Machine.Err(), vmm.ConsoleTail(sb.Machine.ConsoleLog(), 30))
	}
}

// Exec runs a command in the sandbox, streaming its output. If the VM dies meanwhile
// the call ends at once instead of waiting for TCP to give up on the dead guest.
func (sb *Sandbox) Exec(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (*envdclient.Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-sb.Machine.Done():
			cancel(fmt.Errorf("sandbox %s: vm exited: %v", sb.ID, sb.Machine.Err()))
		case <-ctx.Done():
		}
	}()
	res, err := sb.Envd.Exec(ctx, cmd, args, stdout, stderr)
	if err != nil && context.Cause(ctx) != nil && ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	return res, err
}

// Close stops the VM and removes the slot and the sandbox directory. It is safe on a
// partly made sandbox and reports every failure.
func (sb *Sandbox) Close(ctx context.Context) error {
	var errs []error
	if sb.Machine != nil {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := sb.Machine.Stop(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("stop vm: %w", err))
		}
		cancel()
	}
	if sb.Slot != nil {
		if err := sb.Slot.Destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(sb.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", sb.Dir, err))
	}
	return errors.Join(errs...)
}

// freeSlot creates the first slot from first on that is not in use.
func freeSlot(cfg netslot.Config, first int) (*netslot.Slot, error) {
	for i := first; i <= netslot.MaxIndex; i++ {
		a, err := cfg.Addrs(i)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat("/var/run/netns/" + a.NetNS); err == nil {
			continue
		}
		s, err := cfg.Create(i)
		if err == nil {
			return s, nil
		}
		if _, statErr := os.Stat("/var/run/netns/" + a.NetNS); statErr == nil {
			continue // taken by a concurrent creator
		}
		return nil, fmt.Errorf("network slot %d: %w", i, err)
	}
	return nil, errors.New("no free network slot")
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", b), nil
}
