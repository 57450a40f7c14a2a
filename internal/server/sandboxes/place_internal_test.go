package sandboxes

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// Every way a placement decision ends is counted under one of the listed outcomes,
// however the error was wrapped on its way.
func TestPlacementOutcome(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, PlacementPlaced},
		{&scheduler.NoHostError{Reason: "no online host"}, PlacementNoCapacity},
		{fmt.Errorf("reserve: %w", errHostTaken), PlacementLostRace},
		{fmt.Errorf("%w: 20 concurrent sandboxes", core.ErrQuota), PlacementQuota},
		{fmt.Errorf("%w: a sandbox of 64 vCPUs is over the team's quota", core.ErrForbidden), PlacementQuota},
		{fmt.Errorf("%w: team", core.ErrNotFound), PlacementError},
		{errors.New("list hosts: connection refused"), PlacementError},
	} {
		got := placementOutcome(c.err)
		if got != c.want {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
		if !slices.Contains(PlacementOutcomes(), got) {
			t.Errorf("%v: %q is not in PlacementOutcomes", c.err, got)
		}
	}
}
