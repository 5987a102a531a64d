package core

import (
	"context"
	"time"

	"github.com/orgplane/orgplane/internal/store"
)

// Retention deletes in batches of about pruneBatch rows, one transaction
// each, with prunePause between them: the SQLite writer (one connection)
// and Postgres' row locks are never held for long, and restarts and
// writes get their turn between batches.
const (
	pruneBatch = 500
	prunePause = 50 * time.Millisecond
)

// pruneHistory deletes, every RetentionInterval, the restart jobs and the
// changes that ended longer ago than Retention. Every replica runs it:
// deleting is idempotent, so two replicas at once only share the work.
// The audit log is never pruned.
func (s *Service) pruneHistory(ctx context.Context) {
	if s.cfg.Retention < 0 {
		return
	}
	t := time.NewTicker(s.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.prune(ctx)
		}
	}
}

// prune runs one pass of retention.
func (s *Service) prune(ctx context.Context) {
	cutoff := s.clock.Now().Add(-s.cfg.Retention)
	for _, table := range []struct {
		name string
		fn   func(tx store.Store) (int, error)
	}{
		{"restart_jobs", func(tx store.Store) (int, error) { return tx.PruneJobs(ctx, cutoff, pruneBatch) }},
		{"changes", func(tx store.Store) (int, error) { return tx.PruneChanges(ctx, cutoff, pruneBatch) }},
	} {
		total := 0
		for {
			var n int
			err := s.store.InTx(ctx, func(tx store.Store) error {
				var err error
				n, err = table.fn(tx)
				return err
			})
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("prune history; will retry at the next pass", "table", table.name, "err", err)
				}
				break
			}
			total += n
			s.metrics.PrunedRows.WithLabelValues(table.name).Add(float64(n))
			if n == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(prunePause):
			}
		}
		if total > 0 {
			s.log.Info("pruned history", "table", table.name, "rows", total, "ended_before", cutoff)
		}
	}
}
