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

// A client that never sends its first message gets the documented error message and a
// 1008 close once the wait is over, not a connection dropped without a word.
func TestExecStreamFirstMessageTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ws := &execSocket{conn: conn, ctx: r.Context(), log: slog.New(slog.DiscardHandler), idle: 5 * time.Second}
		var start streamStart
		if err := readStart(r.Context(), conn, 100*time.Millisecond, &start); err != nil {
			ws.fail(fmt.Errorf("%w: the first message must be the command as JSON: %v", core.ErrInvalid, err))
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("no error message before the close: %v", err)
	}
	var m streamMessage
	if err := json.Unmarshal(b, &m); err != nil || m.Type != "error" || !strings.Contains(m.Message, "none within 100ms") {
		t.Errorf("message %s (%v), want an error saying no first message came", b, err)
	}
	if _, _, err := conn.Read(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("close: %v, want status 1008", err)
	}
}
