package sandboxes

// FaultPoints name the moments between the steps of a sandbox operation where the
// control plane dying (kill -9, a lost machine) leaves the database and the host
// apart: after the database records the operation's start and before the host is
// asked (…/placed, …/begun), and after the host did it and before the database
// records the end (…/booted, …/done). The fault-matrix tests
// (test/e2e/faults_server_test.go) start `wrenn server` with Config.FaultPoint set to
// one, kill it there — or stop PostgreSQL or Redis there and let it go on — and
// check that the host monitor brings the database back to what the host runs.
var FaultPoints = []string{
	"create/placed", "create/booted",
	"pause/begun", "pause/done",
	"resume/begun", "resume/done",
	"destroy/done",
	"snapshot/done",
}

// faultPoint holds the calling operation when point is the configured fault point:
// it says so in the log and waits to be killed, or released (ReleaseFaultPoint) to go
// on.
func (s *Service) faultPoint(point string) {
	if s.faultAt == "" || s.faultAt != point {
		return
	}
	s.log.Warn("fault point reached: waiting to be killed or released", "point", point)
	<-s.faultRelease
	s.log.Warn("fault point released: the operation goes on", "point", point)
}

// ReleaseFaultPoint lets the operation held at the fault point, and any that reaches
// it later, go on.
func (s *Service) ReleaseFaultPoint() { s.releaseOnce.Do(func() { close(s.faultRelease) }) }
