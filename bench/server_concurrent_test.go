package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/gen/db"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

// cpSpread is how many of the team's sandboxes the concurrent execs and file calls
// share among themselves.
const cpSpread = 10

// benchConcurrentExec starts cpConcurrency execs (`echo N`) through the API at once,
// spread over cpSpread sandboxes, against the same execs sent at once straight to
// the agent. Every answer must be the command's own output.
func benchConcurrentExec(b *testing.B, cp *controlPlane) {
	ctx := context.Background()
	ids := cpSandboxes(b, cp)
	check := func(i int, stdout []byte) error {
		if want := fmt.Sprintf("%d\n", i); string(stdout) != want {
			return fmt.Errorf("exec %d: stdout %q, want %q", i, stdout, want)
		}
		return nil
	}
	api := func(i int) error {
		res, err := cp.api.Exec(ctx, ids[i%len(ids)], "echo", []string{fmt.Sprint(i)}, 0)
		if err != nil {
			return err
		}
		return check(i, res.Stdout)
	}
	direct := func(i int) error {
		res, err := cp.agent.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: ids[i%len(ids)], Cmd: "echo", Args: []string{fmt.Sprint(i)}}))
		if err != nil {
			return err
		}
		return check(i, res.Msg.GetStdout())
	}
	cpCompare(b, "exec", api, direct)
}

// benchConcurrentFiles starts cpConcurrency round trips of a 4 KiB file (upload, then
// download and compare) through the API at once, against the same through the agent.
func benchConcurrentFiles(b *testing.B, cp *controlPlane) {
	ctx := context.Background()
	ids := cpSandboxes(b, cp)
	content := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("%07d\n", i)), 512) }
	check := func(i int, got []byte) error {
		if !bytes.Equal(got, content(i)) {
			return fmt.Errorf("file %d: read %d bytes that differ from the %d written", i, len(got), len(content(i)))
		}
		return nil
	}
	api := func(i int) error {
		id, path := ids[i%len(ids)], fmt.Sprintf("/tmp/api-%d", i)
		if err := cp.api.WriteFile(ctx, id, path, bytes.NewReader(content(i))); err != nil {
			return err
		}
		r, err := cp.api.ReadFile(ctx, id, path)
		if err != nil {
			return err
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return check(i, got)
	}
	direct := func(i int) error {
		id, path := ids[i%len(ids)], fmt.Sprintf("/tmp/direct-%d", i)
		if _, err := cp.agent.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: id, Path: path, Content: content(i)})); err != nil {
			return err
		}
		res, err := cp.agent.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: path}))
		if err != nil {
			return err
		}
		return check(i, res.Msg.GetContent())
	}
	cpCompare(b, "files", api, direct)
}

// cpSandboxes is cpSpread of the team's running sandboxes.
func cpSandboxes(b *testing.B, cp *controlPlane) []string {
	rows, err := db.New(cp.pool).ListSandboxes(context.Background(),
		db.ListSandboxesParams{TeamID: cp.teamID, MaxRows: cpSpread, Statuses: []string{"running"}})
	if err != nil || len(rows) < cpSpread {
		b.Fatalf("%d running sandboxes, want %d: %v", len(rows), cpSpread, err)
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// cpCompare runs cpConcurrency calls of api at once, then of direct, each given its
// own index, and reports both and their ratio; any failed call fails the benchmark.
func cpCompare(b *testing.B, op string, api, direct func(i int) error) {
	indexed := func(f func(int) error) func() error {
		var next atomic.Int64
		return func() error { return f(int(next.Add(1) - 1)) }
	}
	base := cpConcurrent(cpConcurrency, indexed(direct))
	r := cpConcurrent(cpConcurrency, indexed(api))
	p50, p99 := cpPercentiles(r.durations)
	b50, b99 := cpPercentiles(base.durations)
	b.Logf("%d concurrent %s through the API over %d sandboxes: errors %d, p50 %v, p99 %v, wall %v; "+
		"baseline the same straight to the agent: errors %d, p50 %v, p99 %v, wall %v; ratio p50 %.1fx, p99 %.1fx, wall %.1fx (target: no errors)",
		cpConcurrency, op, cpSpread, r.errors, p50, p99, r.wall, base.errors, b50, b99, base.wall,
		float64(p50)/float64(b50), float64(p99)/float64(b99), float64(r.wall)/float64(base.wall))
	if r.errors > 0 {
		b.Errorf("%s through the API: %d of %d failed, first: %v", op, r.errors, cpConcurrency, r.first)
	}
	if base.errors > 0 {
		b.Errorf("%s straight to the agent: %d of %d failed, first: %v", op, base.errors, cpConcurrency, base.first)
	}
	b.ReportMetric(cpMS(p99), op+"-p99-ms")
	b.ReportMetric(float64(r.errors), op+"-errors")
	b.ReportMetric(float64(r.wall)/float64(base.wall), op+"-wall-x-baseline")
}
