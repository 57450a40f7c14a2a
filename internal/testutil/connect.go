package testutil

import (
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
)

// WantCode fails the test now unless err is a Connect error with code and a message
// that starts with prefix ("" accepts any message). what names the call that returned
// err, so that checks made in a loop say which one failed. It stops the test because
// callers go on to use the error as a *connect.Error.
func WantCode(t testing.TB, what string, err error, code connect.Code, prefix string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %v %q", what, code, prefix)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%s: got non-Connect error %v, want %v %q", what, err, code, prefix)
	}
	if ce.Code() != code || !strings.HasPrefix(ce.Message(), prefix) {
		t.Fatalf("%s: got %v %q, want %v with a message starting %q", what, ce.Code(), ce.Message(), code, prefix)
	}
}
