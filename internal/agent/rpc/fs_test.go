package rpc_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/ident"
)

// TestDirectories: MakeDir, ListDir and RemovePath end to end through the real agent
// and a real envd: entries and their fields, depth, the acting user, and the codes of
// every refusal (the guest's, the agent's and the sandbox's state).
func TestDirectories(t *testing.T) {
	// A clock the test moves, to see each call count as activity.
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	a := agenttest.Start(t, agenttest.Options{Config: agent.Config{Now: func() time.Time { return time.Unix(0, now.Load()) }}})
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)
	active := func() time.Time {
		info, err := a.Manager.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		return info.LastActive
	}

	now.Add(int64(time.Minute))
	mk, err := c.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{SandboxId: id, Path: "/home/user/proj/src"}))
	if err != nil {
		t.Fatal(err)
	}
	if e := mk.Msg.GetEntry(); e.GetType() != pb.EntryType_ENTRY_TYPE_DIR || e.GetPath() != "/home/user/proj/src" || e.GetOwner() != "user" || e.GetName() != "src" {
		t.Errorf("made: %v", e)
	}
	if got := active(); !got.Equal(time.Unix(0, now.Load())) {
		t.Errorf("mkdir did not count as activity: last active %v", got)
	}
	_, err = c.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{SandboxId: id, Path: "/home/user/proj/src"}))
	wantCode(t, err, connect.CodeAlreadyExists, "already exists")
	if _, err := c.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{SandboxId: id, Path: "/home/user/rootdir", User: "root"})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: id, Path: "/home/user/proj/src/main.go", Content: []byte("package main\n")})); err != nil {
		t.Fatal(err)
	}

	now.Add(int64(time.Minute))
	ls, err := c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user/proj"}))
	if err != nil || len(ls.Msg.GetEntries()) != 1 || ls.Msg.GetEntries()[0].GetName() != "src" {
		t.Fatalf("list depth 0 (= 1): %v %v", ls, err)
	}
	if got := active(); !got.Equal(time.Unix(0, now.Load())) {
		t.Errorf("list did not count as activity: last active %v", got)
	}
	ls, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user/proj", Depth: 2}))
	if err != nil || len(ls.Msg.GetEntries()) != 2 {
		t.Fatalf("list depth 2: %v %v", ls, err)
	}
	f := ls.Msg.GetEntries()[1]
	if f.GetPath() != "/home/user/proj/src/main.go" || f.GetType() != pb.EntryType_ENTRY_TYPE_FILE || f.GetSize() != 13 ||
		f.GetPermissions() != "-rw-r--r--" || f.GetOwner() != "user" || f.GetGroup() != "user" || f.GetModifiedAt() == nil || f.GetMode() == 0 {
		t.Errorf("file entry: %v", f)
	}
	// (envdtest's guest shares the host's /tmp: the test stays in the throwaway home.)
	ls, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user"}))
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{}
	for _, e := range ls.Msg.GetEntries() {
		owners[e.GetName()] = e.GetOwner()
	}
	if owners["rootdir"] != "root" || owners["proj"] != "user" {
		t.Errorf("owners in /home/user: %v", owners)
	}

	_, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user/nope"}))
	wantCode(t, err, connect.CodeNotFound, "/home/user/nope")
	_, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user/proj/src/main.go"}))
	wantCode(t, err, connect.CodeInvalidArgument, "not a directory")
	_, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user", Depth: hostproto.MaxListDepth + 1}))
	wantCode(t, err, connect.CodeInvalidArgument, "depth")
	_, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id}))
	wantCode(t, err, connect.CodeInvalidArgument, "path is required")
	_, err = c.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{SandboxId: id, Path: "/home/user/proj/src/main.go"}))
	wantCode(t, err, connect.CodeInvalidArgument, "not a directory")
	_, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: ident.NewSandboxID(), Path: "/home/user"}))
	wantCode(t, err, connect.CodeNotFound, "sandbox not found")

	// A listing longer than the agent keeps is cut, and says so.
	if _, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "sh", Args: []string{"-c", fmt.Sprintf("mkdir many && cd many && seq %d | xargs touch", hostproto.MaxListEntries+1)}})); err != nil {
		t.Fatal(err)
	}
	ls, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user/many"}))
	if err != nil || len(ls.Msg.GetEntries()) != hostproto.MaxListEntries || !ls.Msg.GetTruncated() {
		t.Errorf("long listing: %d entries, truncated %v, %v", len(ls.Msg.GetEntries()), ls.Msg.GetTruncated(), err)
	}
	ls, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user/proj"}))
	if err != nil || ls.Msg.GetTruncated() {
		t.Errorf("short listing says truncated: %v", err)
	}

	if _, err := c.RemovePath(ctx, connect.NewRequest(&pb.RemovePathRequest{SandboxId: id, Path: "/home/user/proj"})); err != nil {
		t.Fatal(err)
	}
	_, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user/proj"}))
	wantCode(t, err, connect.CodeNotFound, "")
	_, err = c.RemovePath(ctx, connect.NewRequest(&pb.RemovePathRequest{SandboxId: id, Path: "/home/user/proj"}))
	wantCode(t, err, connect.CodeNotFound, "/home/user/proj")
	_, err = c.RemovePath(ctx, connect.NewRequest(&pb.RemovePathRequest{SandboxId: id, Path: "/home/user/a\x00b"}))
	wantCode(t, err, connect.CodeInvalidArgument, "NUL")

	// A paused sandbox has no guest to ask: failed_precondition, which the control
	// plane turns into "resume it first".
	if _, err := c.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
	_, err = c.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: "/home/user"}))
	wantCode(t, err, connect.CodeFailedPrecondition, "paused")
	_, err = c.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{SandboxId: id, Path: "/home/user/x"}))
	wantCode(t, err, connect.CodeFailedPrecondition, "paused")
	_, err = c.RemovePath(ctx, connect.NewRequest(&pb.RemovePathRequest{SandboxId: id, Path: "/home/user/rootdir"}))
	wantCode(t, err, connect.CodeFailedPrecondition, "paused")
}
