// Package store opens the control plane's PostgreSQL database and brings its schema up
// to date with the embedded goose migrations.
package store

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/wrennhq/wrenn/db/migrations"
)

// Open connects to dsn and checks the connection.
func Open(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// Migrate applies every migration not yet applied, in one pass; a second call is a
// no-op. It returns the schema version reached.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (int64, error) {
	return migrate(ctx, pool, log, func(p *goose.Provider) error {
		_, err := p.Up(ctx)
		return err
	})
}

// MigrateDownTo rolls the schema back to version (0 = empty); for tests and recovery.
func MigrateDownTo(ctx context.Context, pool *pgxpool.Pool, version int64) error {
	_, err := migrate(ctx, pool, nil, func(p *goose.Provider) error {
		_, err := p.DownTo(ctx, version)
		return err
	})
	return err
}

func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, run func(*goose.Provider) error) (int64, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	files, err := fs.Sub(migrations.FS, ".")
	if err != nil {
		return 0, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files)
	if err != nil {
		return 0, fmt.Errorf("migrations: %w", err)
	}
	if err := run(p); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	if log != nil {
		log.Info("database schema up to date", "version", v)
	}
	return v, nil
}
