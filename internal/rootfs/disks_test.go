package rootfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestCloneDisksLifecycle(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "template.ext4")
	if err := os.WriteFile(tmpl, []byte("template bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	sbDir := filepath.Join(dir, "sb")
	if err := os.Mkdir(sbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var d CloneDisks
	disk, err := d.Create(context.Background(), tmpl, sbDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(disk); string(b) != "template bytes" {
		t.Fatalf("clone holds %q", b)
	}
	if _, err := d.Create(context.Background(), tmpl, sbDir, 0); err == nil {
		t.Fatal("a second create over an existing disk succeeded")
	}
	if got, err := d.Adopt(sbDir); err != nil || got != disk {
		t.Fatalf("Adopt = %q, %v", got, err)
	}
	if err := d.Release(sbDir); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(sbDir); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, err := d.Adopt(sbDir); err == nil {
		t.Fatal("adopted a released disk")
	}
}

func TestCloneDisksGrowAndRefuseShrink(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed (e2fsprogs):", err)
	}
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "template.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", tmpl, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v: %s", err, out)
	}
	var d CloneDisks
	small := filepath.Join(dir, "small")
	_ = os.Mkdir(small, 0o700)
	if _, err := d.Create(context.Background(), tmpl, small, 8); !errors.Is(err, ErrTooSmall) {
		t.Fatalf("shrink: %v, want ErrTooSmall", err)
	}
	if _, err := os.Stat(filepath.Join(small, DiskName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused create left its disk behind")
	}
	big := filepath.Join(dir, "big")
	_ = os.Mkdir(big, 0o700)
	disk, err := d.Create(context.Background(), tmpl, big, 64)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(disk); fi.Size() != 64<<20 {
		t.Fatalf("grown disk is %d bytes", fi.Size())
	}
	if out, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput(); err != nil {
		t.Fatalf("grown filesystem does not check clean: %v: %s", err, out)
	}
}
