package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// envSecret is an env var value that must never reach the disk in the clear.
const envSecret = "sk-live-0123456789-never-on-disk"

// createWithSecret creates a sandbox whose env vars hold envSecret and returns its id
// and envd token.
func createWithSecret(t *testing.T, a *agenttest.Agent) (string, string) {
	t.Helper()
	info, token, _, err := a.Manager.Create(context.Background(), agent.Spec{
		Template: agenttest.Template, EnvVars: map[string]string{"API_KEY": envSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	return info.Spec.ID, token
}

func recordPath(dir, id string) string { return filepath.Join(dir, "sandboxes", id, "sandbox.json") }

func readRaw(t *testing.T, dir, id string) []byte {
	t.Helper()
	raw, err := os.ReadFile(recordPath(dir, id))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// assertNoSecrets fails when the record of id holds the token or the env var value.
func assertNoSecrets(t *testing.T, dir, id, token string) {
	t.Helper()
	raw := readRaw(t, dir, id)
	for what, s := range map[string]string{"envd token": token, "env var value": envSecret} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("sandbox.json holds the %s in the clear:\n%s", what, raw)
		}
	}
}

// restart starts another manager on a's WRENN_DIR with key and recovers, as an agent
// restarted on the host does. The first manager is simply no longer used.
func restart(t *testing.T, a *agenttest.Agent, dir string, key []byte) (*agent.Manager, *agent.RecoverReport) {
	t.Helper()
	m, err := agent.New(agent.Config{Dir: dir, Driver: a.Driver, Slots: a.Slots, Disks: agenttest.Disks{}, RecordKey: key, BootTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m, rep
}

// printEnv runs printf "$API_KEY" in the sandbox: it answers only with the right envd
// token, and prints what /init gave the guest.
func printEnv(m *agent.Manager, id string) (string, error) {
	var out bytes.Buffer
	res, err := m.Exec(context.Background(), id, envdclient.Command{Cmd: "/bin/sh", Args: []string{"-c", `printf %s "$API_KEY"`}}, 10*time.Second, nil, &out, &out)
	if err == nil && res.ExitCode != 0 {
		err = errors.New("exit " + out.String())
	}
	return out.String(), err
}

// sandbox.json holds neither the envd token nor env var values; a restarted manager
// with the same key opens it, adopts the VM and still talks to its envd.
func TestRecordKeepsNoSecretsInTheClear(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	id, token := createWithSecret(t, a)
	assertNoSecrets(t, a.Dir, id, token)

	m, rep := restart(t, a, a.Dir, a.RecordKey)
	if !slices.Equal(rep.Adopted, []string{id}) {
		t.Fatalf("recovery %+v, want %s adopted", rep, id)
	}
	if out, err := printEnv(m, id); err != nil || out != envSecret {
		t.Fatalf("exec after restart: %q %v", out, err)
	}
	if info, err := m.Get(id); err != nil || info.Spec.EnvVars["API_KEY"] != envSecret {
		t.Errorf("env vars after restart: %+v %v", info, err)
	}
	assertNoSecrets(t, a.Dir, id, token) // rewritten on adoption
}

// A record written before sealing (token and env vars in the clear) is read after the
// upgrade, and sealed at once.
func TestRecordWrittenInTheClearIsRead(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	id, token := createWithSecret(t, a)
	var rec map[string]any
	if err := json.Unmarshal(readRaw(t, a.Dir, id), &rec); err != nil {
		t.Fatal(err)
	}
	delete(rec, "sealed")
	rec["envd_token"] = token
	rec["spec"].(map[string]any)["env_vars"] = map[string]string{"API_KEY": envSecret}
	old, _ := json.Marshal(rec)
	if err := os.WriteFile(recordPath(a.Dir, id), old, 0o600); err != nil {
		t.Fatal(err)
	}

	m, rep := restart(t, a, a.Dir, a.RecordKey)
	if !slices.Equal(rep.Adopted, []string{id}) {
		t.Fatalf("recovery %+v, want %s adopted", rep, id)
	}
	if out, err := printEnv(m, id); err != nil || out != envSecret {
		t.Fatalf("exec after upgrade: %q %v", out, err)
	}
	if info, _ := m.Get(id); info == nil || info.Spec.EnvVars["API_KEY"] != envSecret {
		t.Errorf("env vars after upgrade: %+v", info)
	}
	assertNoSecrets(t, a.Dir, id, token)
}

// A record sealed for sandbox A, copied over sandbox B's, does not open there: B is
// kept in the error state with the reason and never runs with A's token; A recovers.
func TestRecordCopiedToAnotherSandboxIsRefused(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	idA, _ := createWithSecret(t, a)
	idB, _ := createWithSecret(t, a)
	if err := os.WriteFile(recordPath(a.Dir, idB), readRaw(t, a.Dir, idA), 0o600); err != nil {
		t.Fatal(err)
	}

	m, rep := restart(t, a, a.Dir, a.RecordKey)
	if !slices.Equal(rep.Adopted, []string{idA}) || !slices.Equal(rep.Kept, []string{idB}) {
		t.Errorf("recovery %+v, want %s adopted and %s kept", rep, idA, idB)
	}
	info, err := m.Get(idB)
	if err != nil || info.State != lifecycle.Error || !strings.Contains(info.Error, "record was not opened") {
		t.Errorf("sandbox with a copied record: %+v %v, want error with the reason", info, err)
	}
	if _, err := printEnv(m, idB); err == nil {
		t.Error("exec in the sandbox with a copied record worked")
	}
	if out, err := printEnv(m, idA); err != nil || out != envSecret {
		t.Errorf("exec in the other sandbox: %q %v", out, err)
	}
}

// A record sealed with another key is kept, in the error state, and its sealed secrets
// stay as they were: with the right key back, they open.
func TestRecordUnderAnotherKeyIsKept(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	id, _ := createWithSecret(t, a)
	// A copy of the sandbox in a WRENN_DIR of its own (no VM runs there), as a restore
	// from a backup without the agent's state directory would leave it.
	dir := t.TempDir()
	sbDir := filepath.Join(dir, "sandboxes", id)
	if err := os.MkdirAll(sbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordPath(dir, id), readRaw(t, a.Dir, id), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (agenttest.Disks{}).Create(context.Background(), "", sbDir, 0); err != nil {
		t.Fatal(err)
	}
	sealed := func() any {
		var rec map[string]any
		if err := json.Unmarshal(readRaw(t, dir, id), &rec); err != nil {
			t.Fatal(err)
		}
		return rec["sealed"]
	}
	before := sealed()

	other, err := agent.NewRecordKey()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := restart(t, a, dir, other)
	info, err := m.Get(id)
	if err != nil || info.State != lifecycle.Error || !strings.Contains(info.Error, "record was not opened") || len(info.Spec.EnvVars) != 0 {
		t.Fatalf("sandbox under another key: %+v %v, want error with the reason", info, err)
	}
	if after := sealed(); after != before || before == nil {
		t.Errorf("sealed secrets changed by an agent that could not open them: %v → %v", before, after)
	}

	m, _ = restart(t, a, dir, a.RecordKey)
	if info, err := m.Get(id); err != nil || info.Spec.EnvVars["API_KEY"] != envSecret {
		t.Errorf("with the right key back: %+v %v, want the env vars", info, err)
	}
	if err := m.Destroy(context.Background(), id); err != nil {
		t.Error(err)
	}
}

// The record key is made once (0600) and then only read; a damaged one is refused,
// never replaced, and so is a key of the wrong size.
func TestRecordKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agent")
	key, err := agent.LoadOrCreateRecordKey(dir)
	if err != nil || len(key) != agent.RecordKeySize {
		t.Fatalf("new key: %d bytes, %v", len(key), err)
	}
	path := filepath.Join(dir, agent.RecordKeyFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v, want mode 0600", fi, err)
	}
	if again, err := agent.LoadOrCreateRecordKey(dir); err != nil || !bytes.Equal(again, key) {
		t.Errorf("second load: %v, want the same key", err)
	}
	if err := os.WriteFile(path, key[:20], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.LoadOrCreateRecordKey(dir); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("damaged key file: %v, want refused as malformed", err)
	}
	if b, _ := os.ReadFile(path); len(b) != 20 {
		t.Errorf("damaged key file was replaced")
	}
	a := agenttest.Start(t, agenttest.Options{})
	if _, err := agent.New(agent.Config{Dir: t.TempDir(), Driver: a.Driver, Slots: a.Slots, Disks: agenttest.Disks{}, RecordKey: key[:16]}); err == nil {
		t.Error("a manager started with a 16-byte record key")
	}
}
