package agent

// Fault points name the moments between the steps of a transition, where a crash
// (kill -9 of the agent, of the VMM, a host losing power) leaves the most to recover
// from. The fault-matrix tests (test/e2e/faults_test.go) start an agent with
// Config.FaultPoint set to one of them, wait for it to be reached, kill the agent (or
// the sandbox's VMM) there and check that the sandbox ends in a consistent, usable or
// cleanly failed or removed state with nothing leaked. No sleeps, no races: the agent
// stops exactly there.
var FaultPoints = []string{
	"create/slot", "create/disk", "create/vm", "create/boot", "create/init",
	"pause/vcpus", "pause/snapshot", "pause/stopped",
	"resume/slot", "resume/vm", "resume/running",
	"snapshot/vcpus", "snapshot/memory", "snapshot/disk", "snapshot/published",
	"destroy/vm", "destroy/slot", "destroy/disk",
}

// faultPoint holds the first operation that reaches the configured fault point:
// it says so in the log and waits until the agent is killed (the manager closes first
// only when a test ends it) or, when the sandbox has a running VM, until that VM
// exits: a test that kills the VMM there sees the operation go on without it.
func (m *Manager) faultPoint(point string, sb *sandbox) {
	if m.cfg.FaultPoint == "" || m.cfg.FaultPoint != point || !m.faultArmed.CompareAndSwap(true, false) {
		return // not this point, or it was reached before
	}
	var vmExited <-chan struct{}
	sb.mu.Lock()
	if sb.machine != nil && !exited(sb.machine) { // a stopped one: nothing to wait for
		vmExited = sb.machine.Done()
	}
	sb.mu.Unlock()
	m.log.Warn("fault point reached: waiting to be killed", "point", point, "vm_running", vmExited != nil)
	select {
	case <-m.bgCtx.Done():
	case <-vmExited:
		m.log.Warn("fault point: the vm exited, the operation goes on", "point", point)
	}
}
