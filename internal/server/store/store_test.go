package store

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/wrennhq/wrenn/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestMigrateUpDownUp(t *testing.T) {
	ctx := context.Background()
	pool, err := Open(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log := slog.New(slog.DiscardHandler)
	v, err := Migrate(ctx, pool, log)
	if err != nil || v < 1 {
		t.Fatalf("migrate: %d %v", v, err)
	}
	if again, err := Migrate(ctx, pool, log); err != nil || again != v {
		t.Fatalf("second migrate: %d %v, want a no-op at %d", again, err, v)
	}
	if err := MigrateDownTo(ctx, pool, 0); err != nil {
		t.Fatalf("down: %v", err)
	}
	var tables int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'goose_db_version'`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("after down: %d tables (%v)", tables, err)
	}
	if _, err := Migrate(ctx, pool, log); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

// The schema itself refuses what no code path may ever do.
func TestSchemaInvariants(t *testing.T) {
	ctx := context.Background()
	pool, err := Open(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) error {
		_, err := pool.Exec(ctx, sql, args...)
		return err
	}
	mustFail := func(what, code string, err error) {
		t.Helper()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != code {
			t.Errorf("%s: %v, want SQLSTATE %s", what, err, code)
		}
	}
	var userID, teamID string
	if err := pool.QueryRow(ctx, `INSERT INTO users (email, name) VALUES ('ann@example.com', 'Ann') RETURNING id`).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	mustFail("duplicate email", "23505", exec(`INSERT INTO users (email) VALUES ('ann@example.com')`))
	mustFail("mixed-case email", "23514", exec(`INSERT INTO users (email) VALUES ('Bob@Example.com')`))
	if err := pool.QueryRow(ctx, `INSERT INTO teams (name, slug) VALUES ('ann', '0123456789ab') RETURNING id`).Scan(&teamID); err != nil {
		t.Fatal(err)
	}
	mustFail("bad slug", "23514", exec(`INSERT INTO teams (name, slug) VALUES ('x', 'NOT-HEX')`))
	mustFail("changed slug", "23514", exec(`UPDATE teams SET slug = 'ffffffffffff' WHERE id = $1`, teamID))
	if err := exec(`UPDATE teams SET name = 'renamed' WHERE id = $1`, teamID); err != nil {
		t.Errorf("renaming a team: %v", err)
	}
	if err := exec(`INSERT INTO users_teams (user_id, team_id, role, is_default) VALUES ($1, $2, 'owner', true)`, userID, teamID); err != nil {
		t.Fatal(err)
	}
	var team2 string
	if err := pool.QueryRow(ctx, `INSERT INTO teams (name, slug) VALUES ('second', 'abcdefabcdef') RETURNING id`).Scan(&team2); err != nil {
		t.Fatal(err)
	}
	mustFail("two default teams", "23505", exec(`INSERT INTO users_teams (user_id, team_id, role, is_default) VALUES ($1, $2, 'member', true)`, userID, team2))
	mustFail("unknown role", "23514", exec(`INSERT INTO users_teams (user_id, team_id, role) VALUES ($1, $2, 'god')`, userID, team2))
	mustFail("short key hash", "23514", exec(`INSERT INTO team_api_keys (team_id, key_hash, key_prefix) VALUES ($1, '\x00', 'wrn_')`, teamID))
	mustFail("bad sandbox id", "23514", exec(`INSERT INTO sandboxes (id, team_id, template, status, vcpus, memory_mb, allow_internet_access)
		VALUES ('sb_../../x', $1, 'base', 'running', 1, 512, false)`, teamID))
	if err := exec(`INSERT INTO sandboxes (id, team_id, template, status, vcpus, memory_mb, allow_internet_access)
		VALUES ('sb0123456789abcdefgh', $1, 'base', 'running', 1, 512, false)`, teamID); err != nil {
		t.Errorf("valid sandbox: %v", err)
	}

	// OAuth identities: one user per provider account, gone with the user.
	if err := exec(`INSERT INTO oauth_identities (provider, subject, user_id, email) VALUES ('github', '42', $1, 'ann@example.com')`, userID); err != nil {
		t.Fatal(err)
	}
	mustFail("an identity twice", "23505", exec(`INSERT INTO oauth_identities (provider, subject, user_id) VALUES ('github', '42', $1)`, userID))
	mustFail("bad provider name", "23514", exec(`INSERT INTO oauth_identities (provider, subject, user_id) VALUES ('Git Hub', '43', $1)`, userID))
	mustFail("empty subject", "23514", exec(`INSERT INTO oauth_identities (provider, subject, user_id) VALUES ('github', '', $1)`, userID))

	// Audit logs are append-only; deleting an actor only forgets who it was.
	if err := exec(`INSERT INTO audit_logs (team_id, actor_user_id, action, resource_type, resource_id) VALUES ($1, $2, 'sandbox.create', 'sandbox', 'sb0123456789abcdefgh')`, teamID, userID); err != nil {
		t.Fatal(err)
	}
	mustFail("edit an audit entry", "42501", exec(`UPDATE audit_logs SET action = 'nothing'`))
	mustFail("delete an audit entry", "42501", exec(`DELETE FROM audit_logs`))
	if err := exec(`DELETE FROM users WHERE id = $1`, userID); err != nil {
		t.Fatalf("delete a user with audit entries: %v", err)
	}
	var identities int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM oauth_identities`).Scan(&identities); err != nil || identities != 0 {
		t.Errorf("identities of a deleted user: %d (%v)", identities, err)
	}
	var actor *string
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*), min(actor_user_id::text) FROM audit_logs`).Scan(&n, &actor); err != nil || n != 1 || actor != nil {
		t.Errorf("audit entry after its actor was deleted: count %d actor %v err %v", n, actor, err)
	}
}
