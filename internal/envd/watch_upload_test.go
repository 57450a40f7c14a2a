package envd_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	fspb "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
)

// Uploads replace their target through a hidden temporary name; a watcher must see the
// user's file change, never the temporary name.
func TestWatchSeesUploadsWithoutTempNames(t *testing.T) {
	e := userEnvd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := e.Filesystem(envdtest.JSON).WatchDir(ctx, connect.NewRequest(&fspb.WatchDirRequest{Path: "/home/user"}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() || stream.Msg().GetStart() == nil {
		t.Fatalf("no start event: %v", stream.Err())
	}
	for _, body := range []string{"first", "second, overwriting"} {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/files?path=hello.txt", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := e.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if msg := envdtest.ReadAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("upload: %d %s", resp.StatusCode, msg)
		}
	}
	writes := 0
	deadline := time.After(3 * time.Second)
	events := make(chan *fspb.FilesystemEvent)
	go func() {
		for stream.Receive() {
			if ev := stream.Msg().GetFilesystem(); ev != nil {
				events <- ev
			}
		}
		close(events)
	}()
	for writes < 2 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended: %v", stream.Err())
			}
			if ev.GetName() != "hello.txt" {
				t.Errorf("event for %q (%v); only hello.txt changed", ev.GetName(), ev.GetType())
			}
			if ev.GetType() == fspb.EventType_EVENT_TYPE_WRITE {
				writes++
			}
		case <-deadline:
			t.Fatalf("saw %d WRITE events for hello.txt, want one per upload", writes)
		}
	}
}
