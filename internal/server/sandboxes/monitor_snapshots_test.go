package sandboxes_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// Snapshot versions on a host that no record names — a create whose control plane died
// between the host making the files and the record — are removed once older than
// Grace; recorded ones, young ones and names the control plane does not make (even
// with its prefix) stay.
func TestMonitorOrphanSnapshots(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	e.exec(`INSERT INTO templates (team_id, name, kind, host_name, base_template, vcpus, memory_mb, disk_mb, size_bytes)
		VALUES ($1, 'kept', 'snapshot', 'snap-aaaaaaaaaaaaaaaaaaaaaaaa', 'base', 1, 512, 0, 0)`, e.teamID)
	e.exec(`INSERT INTO template_hosts (template_id, host_id) SELECT id, $1 FROM templates WHERE name = 'kept'`, e.HostID)
	old := time.Now().Add(-time.Hour)
	recorded, orphan, young := "snap-"+strings.Repeat("a", 24), "snap-"+strings.Repeat("b", 24), "snap-"+strings.Repeat("c", 24)
	for name, created := range map[string]time.Time{
		recorded: old, orphan: old, young: time.Now(), "by-hand": old, "snap-by-hand": old,
	} {
		dir := filepath.Join(e.Agent.Dir, "snapshots", name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"name": name, "template": "base", "vcpus": 1, "memory_mib": 512, "created_at": created})
		if err := os.WriteFile(filepath.Join(dir, "info.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Minute})
	list, err := e.Agent.Client.ListSnapshots(ctx, connect.NewRequest(&pb.ListSnapshotsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Msg.GetSnapshots() {
		names = append(names, s.GetName())
	}
	if want := []string{"by-hand", recorded, "snap-by-hand", young}; !slices.Equal(names, want) {
		t.Errorf("the host keeps %v, want %v", names, want)
	}
}
