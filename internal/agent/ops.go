package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// running returns a sandbox that is running, marked active now. No lock is held while
// a command runs: commands run concurrently; only transitions serialise.
func (m *Manager) running(id, op string) (*sandbox, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	state, envd := sb.rec.State, sb.envd
	sb.mu.Unlock()
	if state != lifecycle.Running || envd == nil {
		return nil, &ErrState{ID: id, State: state, Op: op}
	}
	sb.touch(m.cfg.Now())
	return sb, nil
}

// DefaultExecTimeout bounds a command when the request sets none.
const DefaultExecTimeout = hostproto.DefaultExecTimeout

// ExecResult is a finished command.
type ExecResult struct {
	envdclient.Result
	Duration time.Duration
	TimedOut bool
}

// Exec runs a command in a sandbox, streaming output to stdout/stderr, killed when
// timeout passes (0 = DefaultExecTimeout; for a command with stdin or a pty 0 means as
// long as the caller stays). onStart receives the guest pid. A command with stdin or
// a pty is killed when the caller leaves: nobody could drive it any more.
func (m *Manager) Exec(ctx context.Context, id string, cmd envdclient.Command, timeout time.Duration, onStart func(uint32), stdout, stderr io.Writer) (*ExecResult, error) {
	if cmd.Cmd == "" {
		return nil, fmt.Errorf("%w: cmd is required", ErrInvalid)
	}
	sb, err := m.running(id, "exec")
	if err != nil {
		return nil, err
	}
	interactive := cmd.Stdin || cmd.PTY != nil
	if timeout <= 0 && !interactive {
		timeout = DefaultExecTimeout
	}
	defer sb.touch(m.cfg.Now())
	if interactive {
		var pid uint32
		inner := onStart
		onStart = func(p uint32) {
			pid = p
			sb.interactive.Store(p, cmd.PTY != nil)
			if inner != nil {
				inner(p)
			}
		}
		defer func() {
			sb.interactive.Delete(pid)
			if pid != 0 && ctx.Err() != nil {
				killCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := sb.client().Kill(watchVM(killCtx, sb), pid); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
					m.log.Warn("kill abandoned interactive command", "sandbox", id, "pid", pid, "err", err)
				}
			}
		}()
	}
	start := time.Now()
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	res, err := sb.client().Run(watchVM(runCtx, sb), cmd, onStart, stdout, stderr)
	if err != nil {
		if connect.CodeOf(err) == connect.CodeDeadlineExceeded || errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return &ExecResult{Result: envdclient.Result{ExitCode: -1, Status: "timed out"}, Duration: time.Since(start), TimedOut: true}, nil
		}
		return nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	return &ExecResult{Result: *res, Duration: time.Since(start)}, nil
}

// interactiveCmd finds a command started with stdin or a pty; it reports whether it
// has a pty.
func (m *Manager) interactiveCmd(id string, pid uint32, op string) (*sandbox, bool, error) {
	sb, err := m.running(id, op)
	if err != nil {
		return nil, false, err
	}
	pty, ok := sb.interactive.Load(pid)
	if !ok {
		return nil, false, fmt.Errorf("%w: no command with stdin or a pty has pid %d in %s", ErrNotFound, pid, id)
	}
	return sb, pty.(bool), nil
}

// Input sends data to an interactive command's stdin or pty; eof then ends its input
// (Ctrl-D on a pty, as a terminal would).
func (m *Manager) Input(ctx context.Context, id string, pid uint32, data []byte, eof bool) error {
	sb, pty, err := m.interactiveCmd(id, pid, "send input")
	if err != nil {
		return err
	}
	if eof && pty {
		data, eof = append(data, 0x04), false
	}
	if len(data) > 0 {
		if err := sb.client().Input(watchVM(ctx, sb), pid, data, pty); err != nil {
			return fmt.Errorf("input in %s: %w", id, err)
		}
	}
	if eof {
		if err := sb.client().CloseStdin(watchVM(ctx, sb), pid); err != nil {
			return fmt.Errorf("input in %s: %w", id, err)
		}
	}
	return nil
}

// Resize changes an interactive command's pty size.
func (m *Manager) Resize(ctx context.Context, id string, pid uint32, size envdclient.PTYSize) error {
	sb, pty, err := m.interactiveCmd(id, pid, "resize")
	if err != nil {
		return err
	}
	if !pty {
		return fmt.Errorf("%w: command %d has no pty", ErrInvalid, pid)
	}
	if err := sb.client().Resize(watchVM(ctx, sb), pid, size); err != nil {
		return fmt.Errorf("resize in %s: %w", id, err)
	}
	return nil
}

// watchVM returns a context that also ends when the sandbox's VM exits, so a call to a
// dead guest fails at once instead of waiting for TCP to give up.
func watchVM(ctx context.Context, sb *sandbox) context.Context {
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-machine.Done():
			cancel(fmt.Errorf("sandbox %s: vm exited: %v", sb.id, machine.Err()))
		case <-ctx.Done():
		}
	}()
	return ctx
}

// WriteFile writes r to path in the sandbox as user ("" = the sandbox's default user).
func (m *Manager) WriteFile(ctx context.Context, id, path, user string, r io.Reader) error {
	if path == "" {
		return fmt.Errorf("%w: path is required", ErrInvalid)
	}
	sb, err := m.running(id, "write files")
	if err != nil {
		return err
	}
	defer sb.touch(m.cfg.Now())
	return sb.client().WriteFile(watchVM(ctx, sb), path, user, r)
}

// ReadFile opens path in the sandbox; the caller closes the reader.
func (m *Manager) ReadFile(ctx context.Context, id, path, user string) (io.ReadCloser, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: path is required", ErrInvalid)
	}
	sb, err := m.running(id, "read files")
	if err != nil {
		return nil, err
	}
	return sb.client().ReadFile(watchVM(ctx, sb), path, user)
}

// Ping marks a sandbox active, postponing its idle timeout.
func (m *Manager) Ping(id string) error {
	_, err := m.running(id, "ping")
	return err
}

// StartReaper pauses sandboxes idle for longer than their timeout (and destroys one
// only when its pause fails, saying why). It runs on its own context, never a
// request's.
func (m *Manager) StartReaper(interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	m.stopReaper = cancel
	m.reaperDone = make(chan struct{})
	go func() {
		defer close(m.reaperDone)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.reapIdle(ctx)
			}
		}
	}()
}

func (m *Manager) reapIdle(ctx context.Context) {
	now := m.cfg.Now()
	for _, info := range m.List() {
		if info.State != lifecycle.Running || info.Spec.TimeoutSec == 0 {
			continue
		}
		idle := now.Sub(info.LastActive)
		if idle <= time.Duration(info.Spec.TimeoutSec)*time.Second {
			continue
		}
		id := info.Spec.ID
		m.log.Info("sandbox idle past its timeout; pausing", "sandbox", id, "idle", idle.Round(time.Second))
		_, _, err := m.Pause(ctx, id)
		var stateErr *ErrState
		switch {
		case err == nil, errors.Is(err, ErrNotFound), errors.As(err, &stateErr):
			continue // paused, or destroyed, paused or resumed by a caller meanwhile
		}
		m.log.Warn("idle sandbox could not be paused; destroying it", "sandbox", id, "err", err)
		if err := m.Destroy(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			m.log.Warn("destroy idle sandbox", "sandbox", id, "err", err)
		}
	}
}

// Close stops the reaper and background work (the metrics sampler; a warm snapshot
// build in progress is abandoned and cleaned). Sandboxes keep running: a restarted
// agent re-adopts them.
func (m *Manager) Close() {
	if m.stopReaper != nil {
		m.stopReaper()
		<-m.reaperDone
	}
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.bgCancel()
	m.bg.Wait()
}
