package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/devrun"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/vmm/qemu"
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

func vmRun(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("wrenn vm run", flag.ContinueOnError)
	tmpl := fs.String("template", "base", "template to boot")
	vcpus := fs.Int("vcpus", 1, "virtual CPUs")
	mem := fs.Int("memory", 512, "memory in MiB")
	timing := fs.Bool("timings", false, "print how long each step took")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		return fmt.Errorf("usage: wrenn vm run [flags] -- CMD [ARGS…]")
	}
	if err := image.ValidateName(*tmpl); err != nil {
		return err
	}
	t, err := image.Load(wrennDir(), *tmpl)
	if err != nil {
		return err
	}
	sb, err := devrun.Start(ctx, devrun.Config{
		WrennDir: wrennDir(), TemplateID: t.Name, Kernel: t.Kernel, Initrd: t.Initrd, RootFS: t.RootFS,
		VCPUs: *vcpus, MemoryMiB: *mem, FirstSlot: 1, Driver: qemu.New(qemu.Options{Logger: log}),
		Net: netslot.DefaultConfig(), Log: log,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := sb.Close(context.Background()); err != nil {
			log.Error("tear down sandbox", "sandbox", sb.ID, "err", err)
		}
	}()
	if *timing {
		tm := sb.Timings
		fmt.Fprintf(os.Stderr, "sandbox %s: slot %v, disk %v, vm start %v, boot %v, init %v\n", sb.ID, tm.Slot, tm.DiskClone, tm.VMStart, tm.Boot, tm.Init)
	}
	res, err := sb.Exec(ctx, cmd[0], cmd[1:], os.Stdout, os.Stderr)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return exitError{res.ExitCode}
	}
	return nil
}
