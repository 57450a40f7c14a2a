package agent

import (
	"errors"
	"fmt"

	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// Errors callers map to API codes.
var (
	ErrNotFound      = errors.New("sandbox not found")
	ErrAlreadyExists = errors.New("sandbox already exists")
	ErrInvalid       = errors.New("invalid request")
	// ErrNoTemplate: a create names a template this host does not have.
	ErrNoTemplate = errors.New("template not found")
	// ErrUnsupported: this host's VM driver lacks a capability (e.g. snapshots).
	ErrUnsupported = errors.New("not supported on this host")
)

// ErrState is returned when an operation does not fit the sandbox's state.
type ErrState struct {
	ID    string
	State lifecycle.State
	Op    string
}

func (e *ErrState) Error() string {
	return fmt.Sprintf("sandbox %s is %s: cannot %s", e.ID, e.State, e.Op)
}

// invalid wraps ErrInvalid with what was wrong.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
