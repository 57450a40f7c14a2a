package agent

// Fault points name the moments between the steps of a transition, where a crash
// (kill -9 of the agent, of the VMM, a host losing power) leaves the most to recover
// from. The fault-matrix tests (test/e2e/faults_test.go) start an agent with
// Config.FaultPoint set to one of them, wait for it to be reached, kill the agent there
// and check that the next agent recovers the sandbox into a consistent, usable or
// cleanly removed state with nothing leaked. No sleeps, no races: the agent stops
// exactly there.
var FaultPoints = []string{
	"create/slot", "create/disk", "create/vm", "create/boot", "create/init",
	"pause/vcpus", "pause/snapshot", "pause/stopped",
	"resume/slot", "resume/vm", "resume/running",
	"destroy/vm", "destroy/slot", "destroy/disk",
}

// faultPoint stops the calling operation for good when point is the configured fault
// point: it says so in the log and waits until the manager closes (the test kills
// the process before that).
func (m *Manager) faultPoint(point string) {
	if m.cfg.FaultPoint == "" || m.cfg.FaultPoint != point {
		return
	}
	m.log.Warn("fault point reached: waiting to be killed", "point", point)
	<-m.bgCtx.Done()
}
