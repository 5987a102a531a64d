package core_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/testenv"
)

// Retention prunes, in the background, the restart jobs and changes that
// ended longer ago than the retention; newer ones and the audit log stay.
func TestRetentionPrunesFinishedHistory(t *testing.T) {
	t.Parallel()
	clock := &testenv.ShiftClock{}
	rt := fastRuntime()
	rt.RetentionInterval = 50 * time.Millisecond
	e := testenv.New(t, testenv.Options{Runtime: rt, Clock: clock})
	ctx := context.Background()
	ws := runningWorkspaces(t, e, 1)

	old, err := e.Admin.SetSecret(ctx, "", "API_KEY", "v1", false)
	require.NoError(t, err)
	var jobID string
	e.Eventually(30*time.Second, func() bool {
		c, err := e.Admin.GetChange(ctx, old.ChangeID)
		return err == nil && c.State == client.ChangeSucceeded
	}, "the change's restart succeeded")
	jobs, err := e.Admin.ListRestarts(ctx, ws[0])
	require.NoError(t, err)
	for _, j := range jobs {
		if j.ChangeID == old.ChangeID && j.ID != "" {
			jobID = j.ID
		}
	}
	require.NotEmpty(t, jobID)
	audit, err := e.Admin.ListAudit(ctx, "", 1000, 0)
	require.NoError(t, err)

	// A change 29 days younger: still kept when the first is pruned.
	clock.Advance(29 * 24 * time.Hour)
	recent, err := e.Admin.SetSecret(ctx, "", "OTHER_KEY", "v1", false)
	require.NoError(t, err)
	e.Eventually(30*time.Second, func() bool {
		c, err := e.Admin.GetChange(ctx, recent.ChangeID)
		return err == nil && c.State == client.ChangeSucceeded
	}, "the second change's restart succeeded")

	clock.Advance(2 * 24 * time.Hour) // the first is 31 days old, the second 2
	e.Eventually(30*time.Second, func() bool {
		_, err := e.Admin.GetChange(ctx, old.ChangeID)
		ce, ok := err.(*client.Error)
		return ok && ce.Status == http.StatusNotFound
	}, "the old change was pruned")
	e.Eventually(30*time.Second, func() bool {
		err := e.Admin.Do(ctx, http.MethodGet, "/v1/restarts/"+jobID, nil, nil)
		ce, ok := err.(*client.Error)
		return ok && ce.Status == http.StatusNotFound
	}, "its restart job was pruned")
	_, err = e.Admin.GetChange(ctx, recent.ChangeID)
	require.NoError(t, err, "a change within the retention stays")
	after, err := e.Admin.ListAudit(ctx, "", 1000, 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(after.Entries), len(audit.Entries), "the audit log is never pruned")
	resp, err := http.Get(e.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Regexp(t, `orgplane_pruned_rows_total\{table="restart_jobs"\} [1-9]`, string(body))
	require.Regexp(t, `orgplane_pruned_rows_total\{table="changes"\} [2-9]`, string(body), "the change and its part")
}
