package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// SetTeamBYOC lets a team run on its own hosts, or no longer (platform administrators
// only), with its audit entry in the same transaction.
func (s *Service) SetTeamBYOC(ctx context.Context, p *core.Principal, teamID string, byoc bool) error {
	if err := p.RequireAdmin(); err != nil {
		return err
	}
	tid, err := core.ParseUUID(teamID)
	if err != nil {
		return err
	}
	return s.st.Tx(ctx, func(q *db.Queries) error {
		if _, err := q.SetTeamBYOC(ctx, db.SetTeamBYOCParams{ID: tid, IsBYOC: byoc}); errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: team %s", core.ErrNotFound, teamID)
		} else if err != nil {
			return fmt.Errorf("set byoc of team %s: %w", teamID, err)
		}
		return core.Audit(ctx, q, p, "team.byoc", "team", teamID, map[string]any{"byoc": byoc})
	})
}
