package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

func TestMain(m *testing.M) { os.Exit(servertest.Run(m)) }

// The SDK against a real control plane (accounts and keys).
func TestAccountsAndKeys(t *testing.T) {
	ctx := context.Background()
	srv := servertest.New(t)

	anon := client.New(srv.URL)
	s, err := anon.Signup(ctx, "ann@example.com", "Ann", "correct horse battery")
	if err != nil || s.Token == "" || s.Role != "owner" {
		t.Fatalf("signup: %+v %v", s, err)
	}
	_, err = anon.Login(ctx, "ann@example.com", "wrong password!")
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || apiErr.Code != "unauthorized" {
		t.Fatalf("wrong password: %v", err)
	}
	ann := client.New(srv.URL, client.WithToken(s.Token))
	k, err := ann.CreateAPIKey(ctx, "sdk")
	if err != nil || !auth.ValidAPIKey(k.Key) {
		t.Fatalf("create key: %+v %v", k, err)
	}
	keys, err := ann.ListAPIKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].Key != "" || keys[0].ID != k.ID {
		t.Fatalf("list keys: %+v %v", keys, err)
	}
	if k.E2BKey != "e2b_"+strings.TrimPrefix(k.Key, "wrn_") {
		t.Errorf("the key's e2b form: %q for %q", k.E2BKey, k.Key)
	}
	me, err := ann.Me(ctx)
	if err != nil || me.User.Email != "ann@example.com" || me.CurrentTeamID != s.TeamID || len(me.Teams) != 1 || me.Teams[0].Role != "owner" {
		t.Errorf("me: %+v %v", me, err)
	}
	if _, err := ann.SwitchTeam(ctx, s.TeamID); err != nil {
		t.Errorf("switch to own team: %v", err)
	}
	// A key can list sandboxes but not manage keys.
	byKey := client.New(srv.URL, client.WithAPIKey(k.Key))
	if list, err := byKey.ListSandboxes(ctx); err != nil || len(list) != 0 {
		t.Errorf("list sandboxes with a key: %v %v", list, err)
	}
	if _, err := byKey.ListAPIKeys(ctx); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("key listing keys: %v", err)
	}
	if _, err := byKey.GetSandbox(ctx, "sb0123456789abcdefgh"); !client.IsNotFound(err) {
		t.Errorf("missing sandbox: %v", err)
	}
	// Quotas: members read them, only platform administrators set them.
	if q, err := ann.TeamQuota(ctx, s.TeamID); err != nil || q.TeamID != s.TeamID || q.APIKeys.Used != 1 || q.APIKeys.Override != nil {
		t.Errorf("team quota: %+v %v", q, err)
	}
	if _, err := ann.SetTeamQuota(ctx, s.TeamID, map[string]*int{"api_keys": new(5)}); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("owner setting her quota: %v", err)
	}
	if err := ann.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := byKey.ListSandboxes(ctx); !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Errorf("revoked key: %v", err)
	}
}

// Every sandbox call of the SDK against the control plane and a real agent whose
// sandboxes are envd processes (real VMs: test/e2e).
func TestSandboxes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := servertest.New(t)
	c := srv.NewTeam(t, "sdk@example.com").Client
	sb, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{EnvVars: map[string]string{"X": "42"}, Metadata: map[string]string{"k": "v"}})
	if err != nil || sb.Status != "running" || sb.Metadata["k"] != "v" || len(sb.ID) != 20 {
		t.Fatalf("create: %+v %v", sb, err)
	}
	if list, err := c.ListSandboxes(ctx); err != nil || len(list) != 1 || list[0].ID != sb.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if got, err := c.GetSandbox(ctx, sb.ID); err != nil || got.ID != sb.ID {
		t.Fatalf("get: %+v %v", got, err)
	}
	if err := c.Ping(ctx, sb.ID); err != nil {
		t.Errorf("ping: %v", err)
	}
	res, err := c.Run(ctx, sb.ID, client.Command{Cmd: "printenv", Args: []string{"Y"}, Env: map[string]string{"Y": "request"}})
	if err != nil || string(res.Stdout) != "request\n" || res.ExitCode != 0 {
		t.Errorf("run with env: %+v %v", res, err)
	}
	if res, err := c.Exec(ctx, sb.ID, "sh", []string{"-c", "exit 3"}, 0); err != nil || res.ExitCode != 3 {
		t.Errorf("exit code: %+v %v", res, err)
	}
	blob := bytes.Repeat([]byte{0, 255, 1, 254}, 100_000)
	if err := c.WriteFile(ctx, sb.ID, "/home/user/blob", bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	rc, err := c.ReadFile(ctx, sb.ID, "/home/user/blob")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, blob) {
		t.Fatalf("file round trip: %d bytes, want %d", len(got), len(blob))
	}
	if res, err := c.Exec(ctx, sb.ID, "cat", []string{"/home/user/blob"}, 0); err != nil || !bytes.Equal(res.Stdout, blob) || res.Truncated() {
		t.Errorf("binary output through exec: %d bytes, %v", len(res.Stdout), err)
	}
	// Output past MaxOutputBytes is dropped, and the result says how much there was.
	res, err = c.Run(ctx, sb.ID, client.Command{Cmd: "cat", Args: []string{"/home/user/blob"}, MaxOutputBytes: 1000})
	if err != nil || !bytes.Equal(res.Stdout, blob[:1000]) || !res.StdoutTruncated || res.StdoutTotalBytes != int64(len(blob)) || res.StderrTruncated || !res.Truncated() {
		t.Errorf("capped output: %d bytes, truncated %v of %d, %v", len(res.Stdout), res.StdoutTruncated, res.StdoutTotalBytes, err)
	}
	if _, err := c.ExecStream(ctx, sb.ID, client.Command{Cmd: "true", MaxOutputBytes: 1000}); err == nil {
		t.Error("a stream took MaxOutputBytes, which it cannot honour")
	}
	if _, err := c.ReadFile(ctx, sb.ID, "/nope"); !client.IsNotFound(err) {
		t.Errorf("missing file: %v", err)
	}

	// The stream: stdin in, output out, eof ends the command.
	st, err := c.ExecStream(ctx, sb.ID, client.Command{Cmd: "cat", Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.PID() == 0 {
		t.Error("no pid")
	}
	if _, err := st.Write([]byte("hello ")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	end, err := st.Wait(ctx, &out, &errOut)
	if err != nil || end.ExitCode != 0 || out.String() != "hello world" {
		t.Fatalf("stdin stream: %+v %v, stdout %q", end, err, out.String())
	}
	st.Close()
	// A terminal: resize works, and it is a tty.
	st, err = c.ExecStream(ctx, sb.ID, client.Command{Cmd: "tty", PTY: &client.PTYSize{Cols: 80, Rows: 24}})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if end, err := st.Wait(ctx, &out, &errOut); err != nil || end.ExitCode != 0 || !strings.HasPrefix(out.String(), "/dev/pts/") {
		t.Errorf("pty: %+v %v %q", end, err, out.String())
	}
	st.Close()
	// Bad input reaches the caller as errors, not hangs.
	var streamErr *client.StreamError
	if _, err := c.ExecStream(ctx, sb.ID, client.Command{Cmd: "tty", PTY: &client.PTYSize{Cols: 0, Rows: 24}}); !errors.As(err, &streamErr) {
		t.Errorf("zero-width pty: %v", err)
	}
	if _, err := c.ExecStream(ctx, "sb0123456789abcdefgh", client.Command{Cmd: "true"}); !client.IsNotFound(err) {
		t.Errorf("stream on a missing sandbox: %v", err)
	}
	if _, err := c.Run(ctx, sb.ID, client.Command{Cmd: "cat", Stdin: true}); err == nil {
		t.Error("Run with stdin should fail")
	}

	// Pause and resume: a paused sandbox refuses commands (409) and keeps its files.
	if p, err := c.Pause(ctx, sb.ID); err != nil || p.Status != "paused" || p.PausedAt == nil {
		t.Fatalf("pause: %+v %v", p, err)
	}
	if _, err := c.Exec(ctx, sb.ID, "true", nil, 0); !client.IsConflict(err) || !strings.Contains(err.Error(), "resume it first") {
		t.Errorf("exec in a paused sandbox: %v", err)
	}
	if _, err := c.Pause(ctx, sb.ID); !client.IsConflict(err) {
		t.Errorf("pause twice: %v", err)
	}
	if _, err := c.Resume(ctx, "sb0123456789abcdefgh", 0); !client.IsNotFound(err) {
		t.Errorf("resume a missing sandbox: %v", err)
	}
	if r, err := c.Resume(ctx, sb.ID, 120); err != nil || r.Status != "running" || r.TimeoutSec != 120 || r.PausedAt != nil {
		t.Fatalf("resume: %+v %v", r, err)
	}
	rc, err = c.ReadFile(ctx, sb.ID, "/home/user/blob")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, blob) {
		t.Errorf("file after pause and resume: %d bytes, want %d", len(got), len(blob))
	}
	// Destroyed while paused.
	if _, err := c.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}

	if err := c.DestroySandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetSandbox(ctx, sb.ID); err != nil || got.Status != "stopped" {
		t.Errorf("after destroy: %+v %v", got, err)
	}
	if ids := srv.Agent.SandboxIDs(); len(ids) != 0 {
		t.Errorf("agent still runs %v", ids)
	}
}

// Teams and members through the SDK against a real control plane: the shapes the
// server answers decode into the SDK's types, and its refusals into *Error.
func TestTeamsAgainstServer(t *testing.T) {
	ctx := context.Background()
	srv := servertest.New(t)
	anon := client.New(srv.URL)
	own, err := anon.Signup(ctx, "sdk-owner@example.com", "Owner", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := anon.Signup(ctx, "sdk-member@example.com", "Member", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	oc, mc := client.New(srv.URL, client.WithToken(own.Token)), client.New(srv.URL, client.WithToken(mem.Token))
	team, err := oc.CreateTeam(ctx, "SDK Team")
	if err != nil || team.Name != "SDK Team" || team.Role != "owner" || team.Slug == "" || team.Members != 1 {
		t.Fatalf("create team: %+v %v", team, err)
	}
	if users, err := oc.SearchUsers(ctx, "sdk-mem"); err != nil || len(users) != 1 || users[0].ID != mem.UserID {
		t.Fatalf("search: %+v %v", users, err)
	}
	m, err := oc.AddMember(ctx, team.ID, "sdk-member@example.com", "")
	if err != nil || m.UserID != mem.UserID || m.Role != "member" {
		t.Fatalf("add member: %+v %v", m, err)
	}
	if _, err := mc.RenameTeam(ctx, team.ID, "Mine now"); !isStatus(err, 403) {
		t.Errorf("a member renames: %v", err)
	}
	if m, err = oc.SetMemberRole(ctx, team.ID, mem.UserID, "admin"); err != nil || m.Role != "admin" {
		t.Fatalf("make admin: %+v %v", m, err)
	}
	if renamed, err := mc.RenameTeam(ctx, team.ID, "Renamed"); err != nil || renamed.Name != "Renamed" || renamed.Slug != team.Slug {
		t.Errorf("an admin renames: %+v %v", renamed, err)
	}
	members, err := mc.Members(ctx, team.ID)
	if err != nil || len(members) != 2 || members[0].Role != "owner" || members[1].Role != "admin" {
		t.Errorf("members: %+v %v", members, err)
	}
	if err := oc.LeaveTeam(ctx, team.ID); !isStatus(err, 409) {
		t.Errorf("the last owner leaves: %v", err)
	}
	if err := mc.LeaveTeam(ctx, team.ID); err != nil {
		t.Fatalf("the admin leaves: %v", err)
	}
	if _, err := mc.Team(ctx, team.ID); !client.IsNotFound(err) {
		t.Errorf("the team after leaving: %v", err)
	}
	if err := oc.DeleteTeam(ctx, team.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if teams, err := oc.Teams(ctx); err != nil || len(teams) != 1 || teams[0].ID != own.TeamID {
		t.Errorf("teams after the delete: %+v %v", teams, err)
	}
}

func isStatus(err error, status int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == status
}

// Metrics, stats and usage through the SDK against a real control plane.
func TestMetricsAgainstServer(t *testing.T) {
	ctx := context.Background()
	srv := servertest.New(t)
	team := srv.NewTeam(t, "sdk-metrics@example.com")
	sb, err := team.Client.CreateSandbox(ctx, client.CreateSandboxRequest{VCPUs: 2, MemoryMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	m, err := team.Client.SandboxMetrics(ctx, sb.ID, "5m")
	if err != nil || m.SandboxID != sb.ID || m.Range != "5m" {
		t.Fatalf("metrics: %+v %v", m, err)
	}
	if _, err := team.Client.SandboxMetrics(ctx, sb.ID, "7d"); !isStatus(err, 400) {
		t.Errorf("range 7d: %v", err)
	}
	if err := srv.Service.Sandboxes.StatsRound(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := team.Client.TeamStats(ctx, "5m")
	if err != nil || st.Now.Running != 1 || st.Now.VCPUs != 2 || st.Peak.MemoryMB != 256 || len(st.Points) != 1 {
		t.Errorf("stats: %+v %v", st, err)
	}
	days, err := team.Client.Usage(ctx, time.Now(), time.Now())
	if err != nil || len(days) != 1 || days[0].VCPUSeconds != 20 || days[0].GiBSeconds != 2.5 {
		t.Errorf("usage: %+v %v", days, err)
	}
}
