package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/gen/db"
)

// Store is the control plane's state: PostgreSQL for everything durable (through
// the sqlc queries in gen/db) and Redis for what is ephemeral (registration tokens,
// login throttling, list-cache versions, the monitor's lease). The services share
// one Store; it holds no state of its own.
type Store struct {
	DB    *pgxpool.Pool
	Q     *db.Queries // on DB, outside any transaction
	Redis *redis.Client
}

// NewStore wraps the two databases.
func NewStore(pool *pgxpool.Pool, rdb *redis.Client) (*Store, error) {
	if pool == nil || rdb == nil {
		return nil, errors.New("store: PostgreSQL and Redis are required")
	}
	return &Store{DB: pool, Q: db.New(pool), Redis: rdb}, nil
}

// Tx runs fn in one transaction: committed when fn returns nil, rolled back otherwise.
func (s *Store) Tx(ctx context.Context, fn func(q *db.Queries) error) error {
	return pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error { return fn(s.Q.WithTx(tx)) })
}

// Ready reports whether PostgreSQL and Redis answer.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.DB.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := s.Redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Audit appends one entry to the audit log through q, so that inside a transaction
// the entry commits (or not) with the change it records.
func Audit(ctx context.Context, q *db.Queries, p *Principal, action, resourceType, resourceID string, meta map[string]any) error {
	params := db.InsertAuditLogParams{Action: action, ResourceType: resourceType, ResourceID: resourceID, Metadata: []byte("{}")}
	if meta != nil {
		b, err := json.Marshal(meta)
		if err != nil {
			return fmt.Errorf("audit %s: %w", action, err)
		}
		params.Metadata = b
	}
	params.TeamID, _ = ParseUUID(p.TeamID)
	if p.UserID != "" {
		params.ActorUserID, _ = ParseUUID(p.UserID)
	}
	if p.APIKeyID != "" {
		params.ActorAPIKeyID, _ = ParseUUID(p.APIKeyID)
	}
	if _, err := q.InsertAuditLog(ctx, params); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}
