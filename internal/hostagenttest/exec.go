package hostagenttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

// proc is a running ExecStream command with stdin or a pty: ExecInput queues data for
// it (never blocking), the command takes it from the queue.
type proc struct {
	pty  bool
	wake chan struct{} // capacity 1: "the queue changed"

	mu         sync.Mutex
	queue      [][]byte
	eof        bool // stdin closed once the queue is drained
	cols, rows uint32
}

func (p *proc) input(data []byte, eof bool) error {
	p.mu.Lock()
	if p.eof {
		p.mu.Unlock()
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("stdin is closed"))
	}
	if len(data) > 0 {
		p.queue = append(p.queue, bytes.Clone(data))
	}
	p.eof = eof
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

// next returns the next chunk of input, or eof once stdin is closed and drained; it
// waits for either until ctx ends.
func (p *proc) next(ctx context.Context) (data []byte, eof bool, err error) {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			data = p.queue[0]
			p.queue[0] = nil
			p.queue = p.queue[1:]
			p.mu.Unlock()
			return data, false, nil
		}
		eof = p.eof
		p.mu.Unlock()
		if eof {
			return nil, true, nil
		}
		select {
		case <-p.wake:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// result is how a command ended.
type result struct {
	code     int32
	status   string
	timedOut bool
}

func exited(code int) (result, error) {
	return result{code: int32(code), status: "exit status " + strconv.Itoa(code)}, nil
}

// defaultCwd is where relative paths start when the request names no cwd.
const defaultCwd = "/home/user"

// run executes one command of the fake's tiny command set, sending its output to
// emit (false = stdout). p is set for commands started with stdin or a pty.
func (b *box) run(ctx context.Context, r *pb.ExecRequest, p *proc, emit func(stderr bool, data []byte) error) (res result, err error) {
	defer b.touch()
	args := r.GetArgs()
	out := func(s string) error { return emit(false, []byte(s)) }
	errOut := func(s string) error { return emit(true, []byte(s)) }
	name := path.Base(r.GetCmd())
	switch name {
	case "echo":
		if err := out(strings.Join(args, " ") + "\n"); err != nil {
			return res, err
		}
		return exited(0)
	case "true":
		return exited(0)
	case "false":
		return exited(1)
	case "exit":
		if len(args) == 0 {
			return exited(0)
		}
		n, err := strconv.Atoi(args[0])
		if err != nil {
			if err := errOut("fake: exit: " + args[0] + ": numeric argument required\n"); err != nil {
				return res, err
			}
			return exited(2)
		}
		return exited(n & 255)
	case "stderr":
		if err := errOut(strings.Join(args, " ") + "\n"); err != nil {
			return res, err
		}
		return exited(0)
	case "tty":
		if r.Pty != nil {
			if err := out("/dev/pts/0\n"); err != nil {
				return res, err
			}
			return exited(0)
		}
		if err := out("not a tty\n"); err != nil {
			return res, err
		}
		return exited(1)
	case "env":
		return b.printEnv(r, out)
	case "cat":
		if len(args) > 0 {
			return b.cat(r, emit)
		}
		if p == nil {
			return exited(0) // stdin is empty
		}
		return b.wait(ctx, r, func(ctx context.Context) (result, error) {
			for {
				data, eof, err := p.next(ctx)
				if err != nil {
					return res, err
				}
				if eof {
					return exited(0)
				}
				end := false
				if p.pty {
					if i := bytes.IndexByte(data, 0x04); i >= 0 {
						data, end = data[:i], true
					}
				}
				if len(data) > 0 {
					if err := emit(false, data); err != nil {
						return res, err
					}
				}
				if end {
					return exited(0)
				}
			}
		})
	case "sleep":
		secs := 0.0
		if len(args) > 0 {
			if secs, err = strconv.ParseFloat(args[0], 64); err != nil || secs < 0 {
				if err := errOut("sleep: invalid time interval '" + args[0] + "'\n"); err != nil {
					return res, err
				}
				return exited(1)
			}
		}
		return b.wait(ctx, r, func(ctx context.Context) (result, error) {
			t := time.NewTimer(time.Duration(secs * float64(time.Second)))
			defer t.Stop()
			select {
			case <-t.C:
				return exited(0)
			case <-ctx.Done():
				return res, ctx.Err()
			}
		})
	}
	if err := errOut("fake: " + r.GetCmd() + ": command not found\n"); err != nil {
		return res, err
	}
	return exited(127)
}

// wait runs a command that blocks, under the request's timeout (the agent's default
// for commands without stdin or a pty), ending it when the caller goes away or the
// sandbox is destroyed.
func (b *box) wait(ctx context.Context, r *pb.ExecRequest, f func(context.Context) (result, error)) (result, error) {
	timeout := time.Duration(r.GetTimeoutSec()) * time.Second
	if timeout <= 0 && !r.GetStdin() && r.Pty == nil {
		timeout = defaultExecTimeout
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(b.ctx, func() { cancel(context.Cause(b.ctx)) })
	defer stop()
	if timeout > 0 {
		var cancelTimeout context.CancelFunc
		runCtx, cancelTimeout = context.WithTimeout(runCtx, timeout)
		defer cancelTimeout()
	}
	res, err := f(runCtx)
	if err == nil {
		return res, nil
	}
	switch {
	case ctx.Err() != nil: // the caller went away
		return res, connect.NewError(connect.CodeCanceled, fmt.Errorf("exec in %s: %w", b.id, ctx.Err()))
	case b.ctx.Err() != nil:
		return res, connect.NewError(connect.CodeCanceled, fmt.Errorf("exec in %s: %w", b.id, context.Cause(b.ctx)))
	case errors.Is(err, context.DeadlineExceeded):
		return result{code: -1, status: "timed out", timedOut: true}, nil
	}
	return res, err
}

// getenv looks a variable up in the request's environment, then the sandbox's.
func (b *box) getenv(r *pb.ExecRequest, name string) (string, bool) {
	if v, ok := r.GetEnvVars()[name]; ok {
		return v, true
	}
	v, ok := b.env[name]
	return v, ok
}

// printEnv prints the named variables, or the whole environment without arguments.
func (b *box) printEnv(r *pb.ExecRequest, out func(string) error) (result, error) {
	var sb strings.Builder
	code := 0
	if len(r.GetArgs()) == 0 {
		merged := make(map[string]string, len(b.env)+len(r.GetEnvVars()))
		for k, v := range b.env {
			merged[k] = v
		}
		for k, v := range r.GetEnvVars() {
			merged[k] = v
		}
		names := make([]string, 0, len(merged))
		for k := range merged {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			sb.WriteString(k + "=" + merged[k] + "\n")
		}
	}
	for _, name := range r.GetArgs() {
		v, ok := b.getenv(r, name)
		if !ok {
			code = 1
			continue
		}
		sb.WriteString(v + "\n")
	}
	if sb.Len() > 0 {
		if err := out(sb.String()); err != nil {
			return result{}, err
		}
	}
	return exited(code)
}

// cat prints files of the fake filesystem; relative paths start at the request's cwd.
func (b *box) cat(r *pb.ExecRequest, emit func(bool, []byte) error) (result, error) {
	cwd := r.GetCwd()
	if cwd == "" {
		cwd = defaultCwd
	}
	code := 0
	for _, name := range r.GetArgs() {
		p := name
		if !path.IsAbs(p) {
			p = path.Join(cwd, p)
		}
		b.mu.Lock()
		data, ok := b.files[path.Clean(p)]
		b.mu.Unlock()
		var err error
		if ok && len(data) > 0 {
			err = emit(false, data)
		} else if !ok {
			code = 1
			err = emit(true, []byte("cat: "+name+": No such file or directory\n"))
		}
		if err != nil {
			return result{}, err
		}
	}
	return exited(code)
}
