package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/drivers"
)

func imageBuild(ctx context.Context, _ *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("wrenn image build", flag.ContinueOnError)
	name := fs.String("name", "base", "template name")
	envd := fs.String("envd", "", "static envd binary to inject (default: envd next to this binary)")
	fromTar := fs.String("from-tar", "", "build the root filesystem from a `docker export` tar instead of debootstrap")
	mirror := fs.String("mirror", "", "Debian mirror (default http://deb.debian.org/debian)")
	force := fs.Bool("force", false, "rebuild even when nothing changed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *envd == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find envd: %w", err)
		}
		*envd = filepath.Join(filepath.Dir(self), "envd")
	}
	start := time.Now()
	t, err := image.Build(ctx, image.Options{
		Dir: wrennDir(), Name: *name, EnvdPath: *envd, FromTar: *fromTar, Mirror: *mirror,
		Force: *force, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	state := "built"
	if t.UpToDate {
		state = "up to date"
	}
	fmt.Printf("template %s %s in %s: kernel %s, rootfs %s\n", t.Name, state, time.Since(start).Round(time.Millisecond), t.KernelVersion, t.RootFS)
	return nil
}

// vmRun boots one throwaway sandbox through the agent's own manager (no agent process
// needed), runs a command in it and destroys it, also on failure or Ctrl-C.
func vmRun(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("wrenn vm run", flag.ContinueOnError)
	tmpl := fs.String("template", "base", "template to boot")
	vcpus := fs.Int("vcpus", 1, "virtual CPUs")
	mem := fs.Int("memory", 512, "memory in MiB")
	internet := fs.Bool("internet", false, "allow the sandbox to reach the internet")
	timeout := fs.Duration("timeout", 10*time.Minute, "kill the command after this long")
	timing := fs.Bool("timings", false, "print how long each step of the create took")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		return fmt.Errorf("usage: wrenn vm run [flags] -- CMD [ARGS…]")
	}
	driver, err := drivers.Open(cliSettings().VMM, vmm.Options{Logger: log})
	if err != nil {
		return err
	}
	// A key of its own, used once: its sandbox never outlives this command, so its
	// record is never read back.
	key, err := agent.NewRecordKey()
	if err != nil {
		return err
	}
	// Slots of their own, away from an agent's (which start at 1).
	settings := cliSettings()
	m, pool, err := newManager(settings.EgressAllow, settings.EgressDeny, netslot.PoolOptions{FirstIndex: 50000, LastIndex: 59999},
		agent.Config{Dir: wrennDir(), Driver: driver, RecordKey: key, Log: log})
	if err != nil {
		return err
	}
	defer pool.Close()
	info, _, tm, err := m.Create(ctx, agent.Spec{Template: *tmpl, VCPUs: *vcpus, MemoryMiB: *mem, AllowInternet: *internet})
	if err != nil {
		return err
	}
	id := info.Spec.ID
	defer func() {
		if err := m.Destroy(context.Background(), id); err != nil {
			log.Error("destroy sandbox", "sandbox", id, "err", err)
		}
	}()
	if *timing {
		fmt.Fprintf(os.Stderr, "sandbox %s: slot %v, disk %v, vm start %v, boot %v, init %v, total %v\n",
			id, tm.Slot, tm.Disk, tm.VMStart, tm.Boot, tm.Init, tm.Total)
	}
	res, err := m.Exec(ctx, id, envdclient.Command{Cmd: cmd[0], Args: cmd[1:]}, *timeout, nil, os.Stdout, os.Stderr)
	if err != nil {
		return err
	}
	if res.TimedOut {
		return fmt.Errorf("command timed out after %v", *timeout)
	}
	if res.ExitCode != 0 {
		return exitError{res.ExitCode}
	}
	return nil
}
