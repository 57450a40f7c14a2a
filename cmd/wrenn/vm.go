package main

import (
	"context"
	"fmt"
	"github.com/spf13/cobra"
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

// imageOptions are `wrenn image build`'s flags.
type imageOptions struct {
	name, envd, fromTar, mirror string
	force                       bool
}

func newImageCmd(a *app) *cobra.Command {
	var o imageOptions
	build := &cobra.Command{
		Use:   "build [flags]",
		Short: "Build (or refresh) a guest template",
		Long: `Build a guest template into WRENN_DIR/images/NAME: a Debian root filesystem with
envd, a kernel and an initramfs. Each step is cached; a rebuild with nothing changed
takes about a second. The first build runs debootstrap (about 1-2 minutes).`,
		Example: "  wrenn image build\n  wrenn image build --name py --from-tar rootfs.tar",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return imageBuild(cmd.Context(), a, o)
		},
	}
	f := build.Flags()
	f.StringVar(&o.name, "name", "base", "template name")
	f.StringVar(&o.envd, "envd", "", "static envd binary to inject (default: envd next to this binary)")
	f.StringVar(&o.fromTar, "from-tar", "", "build the root filesystem from a `docker export` tar instead of debootstrap")
	f.StringVar(&o.mirror, "mirror", "", "Debian mirror (default http://deb.debian.org/debian)")
	f.BoolVar(&o.force, "force", false, "rebuild even when nothing changed")
	return group("image", "Build guest templates (root)", "", build)
}

func imageBuild(ctx context.Context, a *app, o imageOptions) error {
	if o.envd == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find envd: %w", err)
		}
		o.envd = filepath.Join(filepath.Dir(self), "envd")
	}
	start := time.Now()
	t, err := image.Build(ctx, image.Options{
		Dir: a.settings.Dir, Name: o.name, EnvdPath: o.envd, FromTar: o.fromTar, Mirror: o.mirror,
		Force: o.force, Progress: a.errOut,
	})
	if err != nil {
		return err
	}
	state := "built"
	if t.UpToDate {
		state = "up to date"
	}
	fmt.Fprintf(a.out, "template %s %s in %s: kernel %s, rootfs %s\n", t.Name, state, time.Since(start).Round(time.Millisecond), t.KernelVersion, t.RootFS)
	return nil
}

// vmOptions are `wrenn vm run`'s flags.
type vmOptions struct {
	template      string
	vcpus, memory int
	internet      bool
	timeout       time.Duration
	timings       bool
}

func newVMCmd(a *app) *cobra.Command {
	var o vmOptions
	runCmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Boot a throwaway sandbox, run CMD in it, tear it down (root; no server needed)",
		Long: `Boot one sandbox through the agent's own code on this machine (no server or agent
process needed), run CMD in it, and destroy it, also on failure or Ctrl-C. It exits
with CMD's status.`,
		Example: "  wrenn vm run -- uname -a\n  wrenn vm run --timings --memory 1024 -- python3 -c 'print(1)'",
		Args:    argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return vmRun(cmd.Context(), a, o, args)
		},
	}
	f := runCmd.Flags()
	f.StringVar(&o.template, "template", "base", "template to boot")
	f.IntVar(&o.vcpus, "vcpus", 1, "virtual CPUs")
	f.IntVar(&o.memory, "memory", 512, "memory in MiB")
	f.BoolVar(&o.internet, "internet", false, "allow the sandbox to reach the internet")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "kill the command after this long")
	f.BoolVar(&o.timings, "timings", false, "print how long each step of the create took")
	f.SetInterspersed(false) // what follows CMD is CMD's
	return group("vm", "Throwaway VMs on this machine, without a server (root)", "", runCmd)
}

func vmRun(ctx context.Context, a *app, o vmOptions, cmd []string) error {
	settings := a.settings
	log := settings.Log.New(a.errOut)
	driver, err := drivers.Open(settings.VMM, vmm.Options{Logger: log})
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
	m, pool, err := newManager(settings.EgressAllow, settings.EgressDeny, netslot.PoolOptions{FirstIndex: 50000, LastIndex: 59999},
		agent.Config{Dir: settings.Dir, Driver: driver, RecordKey: key, Log: log})
	if err != nil {
		return err
	}
	defer pool.Close()
	info, _, tm, err := m.Create(ctx, agent.Spec{Template: o.template, VCPUs: o.vcpus, MemoryMiB: o.memory, AllowInternet: o.internet})
	if err != nil {
		return err
	}
	id := info.Spec.ID
	defer func() {
		if err := m.Destroy(context.Background(), id); err != nil {
			log.Error("destroy sandbox", "sandbox", id, "err", err)
		}
	}()
	if o.timings {
		fmt.Fprintf(a.errOut, "sandbox %s: slot %v, disk %v, vm start %v, boot %v, init %v, total %v\n",
			id, tm.Slot, tm.Disk, tm.VMStart, tm.Boot, tm.Init, tm.Total)
	}
	res, err := m.Exec(ctx, id, envdclient.Command{Cmd: cmd[0], Args: cmd[1:]}, o.timeout, nil, a.out, a.errOut)
	if err != nil {
		return err
	}
	if res.TimedOut {
		return fmt.Errorf("command timed out after %v", o.timeout)
	}
	if res.ExitCode != 0 {
		return exitStatus{res.ExitCode}
	}
	return nil
}
