package process

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"golang.org/x/sys/unix"
)

// Output chunk sizes per data event, as E2B's envd sends them.
const (
	pipeChunk = 64 << 10
	ptyChunk  = 16 << 10
)

// drainGrace bounds how long output is still read after the process exited. A background
// grandchild that inherited stdout keeps the pipe open forever; without this bound a
// `server &` command would never report its end.
const drainGrace = 200 * time.Millisecond

// proc is one process started by envd: its config, pipes or terminal, and the streams
// that currently receive its output.
type proc struct {
	pid  uint32
	seq  uint64 // start order, for "first process with this tag"
	cfg  *pb.ProcessConfig
	tag  *string
	cmd  *exec.Cmd
	tty  *os.File // PTY master, nil for pipe processes
	done chan struct{}
	// endedAt is written once by the waiter before the process is moved to the ended
	// table, and read only under the service's lock afterwards.
	endedAt time.Time

	inMu     sync.Mutex
	stdin    *os.File // write end of the stdin pipe; nil when disabled or closed
	hasStdin bool     // started with a stdin pipe (false for /dev/null and PTY)

	mu   sync.Mutex
	subs map[*subscriber]struct{}
	end  *pb.ProcessEvent_EndEvent // set once the process exited and output drained
}

// subscriber is one stream that receives a process's events. Sends block (backpressure
// on the process's output) until the stream reads them or goes away, so no listener
// ever loses output.
type subscriber struct {
	ch   chan *pb.ProcessEvent
	gone chan struct{}
}

// spawnSpec is everything needed to start a process, resolved by the service.
type spawnSpec struct {
	path     string
	args     []string
	env      []string
	dir      string
	cred     *syscall.Credential
	pty      *pb.PTY
	stdin    bool
	onExited func(*proc)
}

// spawn starts the process with a first subscriber already attached, so that the Start
// stream sees every byte of output.
func spawn(s spawnSpec, first *subscriber) (*proc, error) {
	p := &proc{done: make(chan struct{}), subs: map[*subscriber]struct{}{first: {}}}
	cmd := exec.Command(s.path, s.args...)
	cmd.Args[0] = s.path
	cmd.Env = s.env
	cmd.Dir = s.dir
	// Its own process group, so a signal reaches the children a shell started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	p.cmd = cmd

	var readers []*os.File
	var childEnds []*os.File
	closeAll := func() {
		for _, f := range append(readers, childEnds...) {
			f.Close()
		}
		if p.stdin != nil {
			p.stdin.Close()
		}
	}

	if s.pty != nil {
		master, slave, err := pty.Open()
		if err != nil {
			return nil, fmt.Errorf("open pty: %w", err)
		}
		if size := s.pty.GetSize(); size != nil {
			if err := pty.Setsize(master, &pty.Winsize{Cols: uint16(size.GetCols()), Rows: uint16(size.GetRows())}); err != nil {
				master.Close()
				slave.Close()
				return nil, fmt.Errorf("set pty size: %w", err)
			}
		}
		p.tty = master
		readers = append(readers, master)
		childEnds = append(childEnds, slave)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr.Setpgid = false
		cmd.SysProcAttr.Setsid = true
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0 // fd 0 in the child is the slave
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("create stdout pipe: %w", err)
		}
		growPipe(outR)
		readers, childEnds = append(readers, outR), append(childEnds, outW)
		errR, errW, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("create stderr pipe: %w", err)
		}
		growPipe(errR)
		readers, childEnds = append(readers, errR), append(childEnds, errW)
		cmd.Stdout, cmd.Stderr = outW, errW
		if s.stdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("create stdin pipe: %w", err)
			}
			childEnds = append(childEnds, inR)
			cmd.Stdin = inR
			p.stdin, p.hasStdin = inW, true
		}
	}

	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, err
	}
	for _, f := range childEnds {
		f.Close() // the child has its copies; ours would keep EOF from ever arriving
	}
	p.pid = uint32(cmd.Process.Pid)

	exited := make(chan struct{})
	var wg sync.WaitGroup
	if p.tty != nil {
		wg.Add(1)
		go func() { defer wg.Done(); p.pump(p.tty, ptyChunk, ptyData, exited) }()
	} else {
		wg.Add(2)
		go func() { defer wg.Done(); p.pump(readers[0], pipeChunk, stdoutData, exited) }()
		go func() { defer wg.Done(); p.pump(readers[1], pipeChunk, stderrData, exited) }()
	}
	go func() {
		werr := cmd.Wait()
		close(exited)
		for _, f := range readers {
			_ = f.SetReadDeadline(time.Now().Add(drainGrace))
		}
		wg.Wait()
		p.closeStdin()
		if p.tty != nil {
			p.tty.Close()
		} else {
			readers[0].Close()
			readers[1].Close()
		}
		p.finish(endEvent(cmd.ProcessState, werr))
		if s.onExited != nil {
			s.onExited(p)
		}
	}()
	return p, nil
}

// pipeSize is the kernel buffer of output pipes: large enough that a fast writer is
// not stopped every 64 KiB, and that one read usually fills a whole event.
const pipeSize = 1 << 20

// growPipe enlarges a pipe's buffer; failing (an unprivileged limit) only costs speed.
func growPipe(f *os.File) {
	if sc, err := f.SyscallConn(); err == nil {
		_ = sc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
}

type dataKind int

const (
	stdoutData dataKind = iota
	stderrData
	ptyData
)

func dataEvent(kind dataKind, b []byte) *pb.ProcessEvent {
	d := &pb.ProcessEvent_DataEvent{}
	switch kind {
	case stdoutData:
		d.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: b}
	case stderrData:
		d.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: b}
	case ptyData:
		d.Output = &pb.ProcessEvent_DataEvent_Pty{Pty: b}
	}
	return &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: d}}
}

// pump reads one output stream and broadcasts it until EOF, or until the output has
// been quiet for drainGrace after the process exited (the waiter arms that deadline).
func (p *proc) pump(f *os.File, chunk int, kind dataKind, exited <-chan struct{}) {
	for {
		buf := make([]byte, chunk) // a fresh buffer: subscribers hold on to the slice
		n, err := f.Read(buf)
		if n > 0 {
			p.broadcast(dataEvent(kind, buf[:n]))
			select {
			case <-exited:
				_ = f.SetReadDeadline(time.Now().Add(drainGrace))
			default:
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) || isPTYClosed(err) {
				return
			}
			// Any other read error: stop reading; the process's end is still reported.
			return
		}
	}
}

// isPTYClosed reports the EIO Linux returns on a master once every slave fd is closed.
func isPTYClosed(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && errors.Is(pe.Err, syscall.EIO)
}

func (p *proc) broadcast(ev *pb.ProcessEvent) {
	p.mu.Lock()
	subs := make([]*subscriber, 0, len(p.subs))
	for s := range p.subs {
		subs = append(subs, s)
	}
	p.mu.Unlock()
	for _, s := range subs {
		select {
		case s.ch <- ev:
		case <-s.gone:
		}
	}
}

// subscribe attaches a stream. ok is false when the process already ended; end then
// holds its end event.
func (p *proc) subscribe() (sub *subscriber, end *pb.ProcessEvent_EndEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.end != nil {
		return nil, p.end
	}
	sub = newSubscriber()
	p.subs[sub] = struct{}{}
	return sub, nil
}

func (p *proc) unsubscribe(sub *subscriber) {
	p.mu.Lock()
	delete(p.subs, sub)
	p.mu.Unlock()
}

func newSubscriber() *subscriber {
	return &subscriber{ch: make(chan *pb.ProcessEvent, 64), gone: make(chan struct{})}
}

// finish delivers the end event to every subscriber and marks the process ended.
func (p *proc) finish(end *pb.ProcessEvent_EndEvent) {
	ev := &pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}}
	p.mu.Lock()
	p.end = end
	subs := p.subs
	p.subs = nil
	p.mu.Unlock()
	for s := range subs {
		select {
		case s.ch <- ev:
		case <-s.gone:
		}
	}
	close(p.done)
}

// endEvent describes how the process ended, in the words of Go's *exec.ExitError, which
// is what E2B's SDKs display ("exit status 1", "signal: killed").
func endEvent(ps *os.ProcessState, werr error) *pb.ProcessEvent_EndEvent {
	end := &pb.ProcessEvent_EndEvent{ExitCode: -1}
	if ps != nil {
		end.Exited = ps.Exited()
		end.ExitCode = int32(ps.ExitCode()) // -1 when signalled
		end.Status = ps.String()
	}
	if werr != nil {
		msg := werr.Error()
		end.Error = &msg
		if end.Status == "" {
			end.Status = msg
		}
	}
	return end
}

// writeInput sends bytes to the process's stdin pipe or terminal.
func (p *proc) writeInput(in *pb.ProcessInput) error {
	switch v := in.GetInput().(type) {
	case *pb.ProcessInput_Pty:
		if p.tty == nil {
			return errNotPTY
		}
		_, err := p.tty.Write(v.Pty)
		return err
	case *pb.ProcessInput_Stdin:
		if p.tty != nil {
			return errIsPTY
		}
		p.inMu.Lock()
		defer p.inMu.Unlock()
		if p.stdin == nil {
			if p.hasStdin {
				return errStdinClosed
			}
			return errNoStdin
		}
		_, err := p.stdin.Write(v.Stdin)
		return err
	default:
		return errNoInput
	}
}

var (
	errNotPTY      = errors.New("process has no pty: send stdin instead")
	errIsPTY       = errors.New("process runs in a pty: send pty input instead")
	errStdinClosed = errors.New("stdin of the process is closed")
	errNoStdin     = errors.New("process was started without stdin")
	errNoInput     = errors.New("input is not set")
)

// closeStdin closes the stdin pipe; closing twice is fine.
func (p *proc) closeStdin() {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
	}
}

// signal delivers sig to the process's group (its children too), falling back to the
// process alone.
func (p *proc) signal(sig syscall.Signal) error {
	if err := syscall.Kill(-int(p.pid), sig); err == nil {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

func (p *proc) resize(size *pb.PTY_Size) error {
	if p.tty == nil {
		return errNotPTY
	}
	return pty.Setsize(p.tty, &pty.Winsize{Cols: uint16(size.GetCols()), Rows: uint16(size.GetRows())})
}
