package core_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// Issue 8, finding 14: two concurrent re-parents that would together make
// a cycle (a under b, b under a) deadlocked on Postgres and answered 500.
// They take turns: one wins, the other is refused as a cycle (4xx), and
// the tree stays a tree.
func TestConcurrentReparentsNeverCycleNorFail(t *testing.T) {
	t.Parallel()
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := testenv.New(t, testenv.Options{Runtime: rulesRuntime(), Postgres: pg})
			ctx := context.Background()
			for round := range 15 {
				a, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "a" + string(rune('a'+round)), Spec: rulesSpec})
				require.NoError(t, err)
				b, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "b" + string(rune('a'+round)), Spec: rulesSpec})
				require.NoError(t, err)
				var wg sync.WaitGroup
				errs := make([]error, 2)
				move := func(i int, id, parent string) {
					defer wg.Done()
					_, errs[i] = e.Admin.PatchWorkspace(ctx, id, client.PatchWorkspace{ParentID: &parent})
				}
				wg.Add(2)
				go move(0, a.ID, b.ID)
				go move(1, b.ID, a.ID)
				wg.Wait()
				won := 0
				for _, err := range errs {
					if err == nil {
						won++
						continue
					}
					var ce *client.Error
					require.True(t, errors.As(err, &ce), "round %d: %v", round, err)
					require.Less(t, ce.Status, 500, "round %d: %v", round, err)
				}
				require.Equal(t, 1, won, "round %d: exactly one re-parent wins: %v", round, errs)
				ga, gb := getWS(t, e, a.ID), getWS(t, e, b.ID)
				require.False(t, ga.ParentID != nil && gb.ParentID != nil && *ga.ParentID == b.ID && *gb.ParentID == a.ID, "round %d: a cycle", round)
			}
		})
	}
}
