package propagation_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

// TestProvisionFailsAfterSecretChange: the restart a secret change causes
// cannot bring up a healthy box. The workspace must end failed, loudly
// (last_error, audit entries, metrics), after bounded retries, and never be
// left running with the old env: the incident's 14-hour silent outage, made
// visible.
func TestProvisionFailsAfterSecretChange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags []string
		// next is the spec switched to before the secret write: the boxes
		// of the restart run it.
		next  map[string]any
		cause string // of the box.failed entries
		err   string // in last_error
		// unreachable: boxes cannot heartbeat (see upUnreachable).
		unreachable bool
	}{{
		name:  "new box exits at once",
		next:  map[string]any{"command": []string{"/bin/sh", "-c", "echo cannot start; exit 7"}, "ready_after_seconds": 2},
		cause: "exited_during_provision",
		err:   "exited with code 7",
	}, {
		// An agent box (no command) whose heartbeats never get through: a
		// plain box may no longer ask for a ready_after the provision
		// timeout would cut short (refused as invalid_spec).
		name:        "new box never healthy",
		flags:       []string{"--provision-timeout", "2s", "--stop-grace", "1s"},
		unreachable: true,
		next:        map[string]any{},
		cause:       "provision_timeout",
		err:         "was not healthy within 2s",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := up
			if tc.unreachable {
				start = upUnreachable
			}
			p := start(t, tc.flags...)
			if tc.unreachable {
				// Its platform box (an agent) cannot heartbeat either: late
				// is not dead, so it is kept, degraded (never terminated on
				// orgplane's own nor failed); let that settle first.
				p.waitWS(p.platformID, 60*time.Second, "platform kept, degraded", func(w client.Workspace) bool {
					return w.Status == "degraded"
				})
			}
			// The old box: a plain process, healthy once alive 0.5s.
			w, err := p.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: "svc",
				Spec: mustJSON(t, map[string]any{"command": []string{"/bin/sleep", "1000"}, "ready_after_seconds": 0.5})})
			require.NoError(t, err)
			id := w.ID
			p.waitWS(id, 30*time.Second, "running", func(w client.Workspace) bool { return w.Status == "running" })
			old := oneBox(t, p.boxURL, id)
			_, err = p.admin.PatchWorkspace(bg, id, client.PatchWorkspace{Spec: mustJSON(t, tc.next)})
			require.NoError(t, err)
			require.EqualValues(t, 1, p.get(id).Generation, "a spec change alone restarts nothing")
			failedBefore := metric(t, p.url, "orgplane_restarts_total", `outcome="failed"`)
			boxBefore := metric(t, p.url, "orgplane_box_failures_total", `cause="`+tc.cause+`"`)

			res, err := p.admin.SetSecret(bg, id, "DB_PASSWORD", randomValue(t), false)
			require.NoError(t, err)
			require.Equal(t, "restart_queued", decisionsByWS(res)[id].Reason)

			// Watch it to the end: once the restart has begun (generation 2
			// or more) the workspace is never running again.
			var seen []string
			var last client.Workspace
			eventually(t, 60*time.Second, func() bool {
				last = p.get(id)
				if last.Generation > 1 {
					seen = append(seen, last.Status)
				}
				js := p.restarts(id)
				return last.Status == "failed" && len(js) > 0 && js[0].State == "failed"
			}, func() string {
				return "the restart did not end failed: status " + last.Status + ", last_error " + last.LastError
			})
			require.NotContains(t, seen, "running", "running after a failed provision")
			require.Contains(t, last.LastError, tc.err)

			// Bounded: three attempts (the default), then it stays failed.
			js := p.restarts(id)
			require.Equal(t, "failed", js[0].State)
			require.True(t, js[0].Automatic)
			require.Equal(t, 3, js[0].Attempts)
			require.Contains(t, js[0].Error, tc.err, "the job says why")
			time.Sleep(2 * time.Second)
			after := p.get(id)
			require.Equal(t, "failed", after.Status)
			require.Equal(t, last.Generation, after.Generation, "no more attempts")
			require.EqualValues(t, 4, after.Generation, "generation 1, then three attempts")

			// Never running with the old env: the old process is gone, and
			// so is every box of the attempts.
			require.False(t, e2etest.ProcessAlive(old.pid), "the old box still runs")
			require.Empty(t, scanBoxes(p.boxURL)[id], "a box of the workspace still runs")

			// Loud: audit entries and metrics.
			audit := p.audit(id)
			require.Equal(t, 1, countAction(audit, "restart.failed"))
			require.Equal(t, 2, countAction(audit, "restart.retry"))
			boxFailed := 0
			for _, e := range audit {
				if e.Action != "box.failed" {
					continue
				}
				var d struct {
					Cause string `json:"cause"`
				}
				require.NoError(t, json.Unmarshal(e.Detail, &d))
				require.Equal(t, tc.cause, d.Cause)
				boxFailed++
			}
			require.Equal(t, 3, boxFailed)
			require.Equal(t, failedBefore+1, metric(t, p.url, "orgplane_restarts_total", `outcome="failed"`))
			require.Equal(t, boxBefore+3, metric(t, p.url, "orgplane_box_failures_total", `cause="`+tc.cause+`"`))
			require.True(t, strings.Contains(p.proc.Output(), "box failed"), "the server logged the failure")
		})
	}
}
