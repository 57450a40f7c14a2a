package rpc

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/internal/envdclient"
)

// TestGuestErrorsKeepTheirCode: what envd refuses because of the request reaches the
// control plane with a code that says so; envd's own failures stay internal.
func TestGuestErrorsKeepTheirCode(t *testing.T) {
	guest := func(code connect.Code, msg string) error {
		return fmt.Errorf("exec in sb1: start x: %w", connect.NewError(code, errors.New(msg)))
	}
	for _, c := range []struct {
		err  error
		want connect.Code
		msg  string
	}{
		{guest(connect.CodeInvalidArgument, `start "/nonexistent": fork/exec /nonexistent: no such file or directory`), connect.CodeInvalidArgument, "no such file"},
		{guest(connect.CodeInvalidArgument, "cwd '/nope' does not exist"), connect.CodeInvalidArgument, "cwd '/nope' does not exist"},
		{guest(connect.CodeInvalidArgument, `start "/etc/passwd": fork/exec /etc/passwd: permission denied`), connect.CodePermissionDenied, "permission denied"},
		{guest(connect.CodeNotFound, "process with pid 7 not found"), connect.CodeNotFound, "pid 7"},
		{guest(connect.CodeUnauthenticated, "bad token"), connect.CodeInternal, "bad token"},
		{guest(connect.CodeInternal, "boom"), connect.CodeInternal, "boom"},
		{&envdclient.FileError{Status: http.StatusInsufficientStorage, Message: "not enough disk space available"}, connect.CodeResourceExhausted, "disk space"},
		{&envdclient.FileError{Status: http.StatusForbidden, Message: "permission denied"}, connect.CodePermissionDenied, "permission denied"},
		{&envdclient.FileError{Status: http.StatusBadRequest, Message: "too many levels of symbolic links"}, connect.CodeInvalidArgument, "symbolic links"},
	} {
		got := toConnect(c.err)
		var ce *connect.Error
		if !errors.As(got, &ce) || ce.Code() != c.want || !strings.Contains(ce.Message(), c.msg) {
			t.Errorf("toConnect(%v) = %v, want %v mentioning %q", c.err, got, c.want, c.msg)
		}
	}
}
