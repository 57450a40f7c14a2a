package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/testutil"
	"golang.org/x/sys/unix"
)

// fill takes every free block of the filesystem at dir but leave bytes into one
// file, and returns a function that frees them again.
func fill(t *testing.T, dir string, leave int64) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	// Fallocate what statfs reports, then any blocks it did not count, a block at a time.
	_ = unix.Fallocate(int(f.Fd()), 0, 0, free)
	end := free
	for ; ; end += st.Bsize {
		if err := unix.Fallocate(int(f.Fd()), 0, end, st.Bsize); err != nil {
			break
		}
	}
	if leave > 0 {
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, end-leave, leave); err != nil {
			t.Fatal(err)
		}
	}
	return func() { os.Remove(path) }
}

// A pause whose snapshot cannot be written (its filesystem is full) fails with a
// clear error and leaves the sandbox running and usable — its guest even touching
// memory it had not touched before — and a pause once there is room again works.
func TestPauseOnFullDisk(t *testing.T) {
	needVM(t)
	mnt := testutil.MountLoopFS(t, 2400<<20, "mkfs.ext4", "-q", "-F", "-m", "0")
	// The agent's WRENN_DIR is the small filesystem; its templates stay where they are.
	for _, d := range []string{"images", "kernels"} {
		if err := os.Symlink(filepath.Join(env.dir, d), filepath.Join(mnt, d)); err != nil {
			t.Fatal(err)
		}
	}
	a := startAgent(t, freeAddr(t), "WRENN_DIR="+mnt, "WRENN_AGENT_STATE_DIR="+filepath.Join(mnt, "agent"))
	id := create(t, a.client, &pb.CreateSandboxRequest{MemoryMb: 256}).GetSandbox().GetId()
	t.Cleanup(func() {
		_, _ = a.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
	})
	execIn(t, a.client, id, "echo before > /home/user/kept")
	// The sandbox's disk is a sparse file on the same filesystem: the guest writing a
	// block it never wrote needs a new one, and on a full disk QEMU stops the VM
	// (io-error) until there is room. That is the disk's affair; this test is the
	// snapshot's, so the disk gets its blocks first.
	disk, err := os.OpenFile(filepath.Join(mnt, "sandboxes", id, "rootfs.ext4"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := disk.Stat()
	if err == nil {
		err = unix.Fallocate(int(disk.Fd()), 0, 0, fi.Size())
	}
	if err != nil {
		t.Fatalf("allocate the sandbox's disk: %v", err)
	}
	disk.Close()

	// Full to the last block: the pause cannot even record that it started. With a
	// few blocks left, it stops the vCPUs and fails writing the snapshot, and must run
	// them again.
	for _, leave := range []int64{0, 16 << 10} {
		free := fill(t, mnt, leave)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: id}))
		cancel()
		if err == nil {
			t.Fatalf("a pause on a full filesystem (%d bytes free) succeeded", leave)
		}
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "no space left") {
			t.Errorf("pause on a full filesystem: %v, want resource_exhausted saying there is no space", err)
		}
		t.Logf("pause with %d bytes free: %v", leave, err)
		got, gerr := a.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
		if gerr != nil || got.Msg.GetSandbox().GetState() != pb.SandboxState_SANDBOX_STATE_RUNNING {
			t.Fatalf("after the failed pause: %v %v, want running", got, gerr)
		}
		// 64 MiB of guest RAM it never used: with the disk full, memory the host had
		// not reserved for the guest would kill its VM here.
		if out := string(execIn(t, a.client, id, "head -c 64M /dev/urandom > /dev/shm/big && cat /home/user/kept && rm /dev/shm/big").GetStdout()); out != "before\n" {
			t.Errorf("the sandbox after a failed pause: %q", out)
		}
		if left, _ := filepath.Glob(filepath.Join(mnt, "sandboxes", id, "snapshot*")); len(left) != 0 {
			t.Errorf("a failed pause left %v", left)
		}
		free()
	}

	pause(t, a.client, id)
	resume(t, a.client, id)
	if out := string(execIn(t, a.client, id, "cat /home/user/kept").GetStdout()); out != "before\n" {
		t.Errorf("after a pause with room again: %q", out)
	}
}
