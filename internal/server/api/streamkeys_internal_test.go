package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// TestExecStreamFramesAreCaseSensitive: the exec stream's frames, like the REST
// bodies, refuse a key that only case-folds to a field ({"CMD": …} is not cmd), and
// still refuse unknown keys.
func TestExecStreamFramesAreCaseSensitive(t *testing.T) {
	for _, tc := range []struct {
		frame, refused string
		v              any
	}{
		{`{"cmd":"ls","args":["-l"],"stdin":true,"pty":{"cols":80,"rows":24}}`, "", &streamStart{}},
		{`{"CMD":"ls"}`, `"CMD" (field names are case-sensitive: "cmd")`, &streamStart{}},
		{`{"cmd":"ls","Timeout_Sec":5}`, `"timeout_sec"`, &streamStart{}},
		{`{"cmd":"ls","Stdin":true}`, `"stdin"`, &streamStart{}},
		{`{"cmd":"ls","pty":{"Cols":80,"rows":24}}`, `"cols"`, &streamStart{}},
		{`{"cmd":"ls","shell":true}`, `unknown field "shell"`, &streamStart{}},
		{`{"type":"resize","cols":80,"rows":24}`, "", &clientMessage{}},
		{`{"Type":"eof"}`, `"type"`, &clientMessage{}},
		{`{"type":"stdin","DATA":"eA=="}`, `"data"`, &clientMessage{}},
	} {
		err := decodeFrame([]byte(tc.frame), tc.v)
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.frame, err)
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("%s: %v, want it refused naming %s", tc.frame, err, tc.refused)
		}
	}
}

// TestExecStreamCaseFoldedStartIsRefused: over the socket, a first message with a
// case-folded key gets an error message naming the field, not a command run.
func TestExecStreamCaseFoldedStartIsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ws := &execSocket{conn: conn, ctx: r.Context(), log: slog.New(slog.DiscardHandler), idle: 5 * time.Second}
		var start streamStart
		if err := readStart(r.Context(), conn, 5*time.Second, &start); err != nil {
			ws.fail(fmt.Errorf("%w: the first message must be the command as JSON: %v", core.ErrInvalid, err))
			return
		}
		_ = ws.send(streamMessage{Type: "start"})
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"Cmd":"ls"}`)); err != nil {
		t.Fatal(err)
	}
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var m streamMessage
	if err := json.Unmarshal(b, &m); err != nil || m.Type != "error" || !strings.Contains(m.Message, `case-sensitive: "cmd"`) {
		t.Errorf("message %s (%v), want an error naming cmd", b, err)
	}
}
