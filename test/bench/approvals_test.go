package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/ids"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// BenchmarkApprovalDecisionToEnqueued: the platform's management token
// writes a global secret that restarts every one of n workspaces, which
// the policy gates; a person approves. Each iteration is that one
// decision, from the call to its return: the vote, the execution's
// re-checks, the plan of n decisions and its n restart jobs committed.
// The service is not started, so nothing executes the jobs.
func BenchmarkApprovalDecisionToEnqueued(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, n := range []int{1_000, 10_000} {
			b.Run(fmt.Sprintf("%s/%dk", engine, n/1000), func(b *testing.B) {
				st, url := openStore(b, engine)
				master, _ := crypto.GenerateMasterKey()
				kr, err := core.OpenKeyring(context.Background(), st, master)
				require.NoError(b, err)
				svc := core.New(st, core.Options{Keys: kr})
				org, err := svc.CreateOrg(context.Background(), "acme")
				require.NoError(b, err)
				insertWorkspaces(b, st, org, n)
				admin := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.KindAdmin, OrgID: org.Org.ID, TokenID: org.Token.ID})
				mgmt, _, err := svc.CreateToken(admin, core.CreateTokenInput{Kind: store.TokenAdmin, Name: "concierge", ActingWorkspaceID: org.Platform.ID})
				require.NoError(b, err)
				agent := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.KindAdmin, OrgID: org.Org.ID,
					TokenID: mgmt.ID, ActingWorkspaceID: org.Platform.ID})
				ownerTok, err := svc.Authenticate(context.Background(), org.OwnerSecret)
				require.NoError(b, err)
				person := auth.WithPrincipal(context.Background(), ownerTok)
				raw := rawDB(b, engine, url)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					_, err := svc.SetSecret(agent, "", "API_KEY", fmt.Sprintf("value-%d", i), false)
					var gated *core.ApprovalRequired
					require.True(b, errors.As(err, &gated), "gated: %v", err)
					b.StartTimer()
					a, err := svc.DecideApproval(person, gated.Approval.ID, true, "")
					b.StopTimer()
					require.NoError(b, err)
					require.Equal(b, "succeeded", a.State, "%+v", a.ErrorMessage)
					require.Equal(b, n, a.Outcome.Restarts)
					_, err = raw.Exec(`DELETE FROM restart_jobs`)
					require.NoError(b, err)
					b.StartTimer()
				}
				b.ReportMetric(float64(n), "workspaces")
			})
		}
	}
}

func insertWorkspaces(b *testing.B, st store.Store, org core.NewOrg, n int) []store.Workspace {
	return insertWorkspacesSpec(b, st, org, n, "{}")
}

// insertWorkspacesSpec is insertWorkspaces with the given process spec.
func insertWorkspacesSpec(b *testing.B, st store.Store, org core.NewOrg, n int, spec string) []store.Workspace {
	now := time.Now().UTC()
	out := make([]store.Workspace, 0, n)
	for start := 0; start < n; start += 1000 {
		var batch []store.Workspace
		err := st.InTx(context.Background(), func(tx store.Store) error {
			batch = batch[:0] // a retried transaction starts over
			for j := start; j < start+1000 && j < n; j++ {
				w := store.Workspace{ID: ids.New("w"), OrgID: org.Org.ID, ParentID: org.Platform.ID,
					Name: fmt.Sprintf("w%06d", j), Kind: store.KindWorkspace, Runtime: "process", Spec: spec,
					Status: "running", RestartPolicy: "auto", Generation: 1, CreatedAt: now, UpdatedAt: now}
				if err := tx.InsertWorkspace(context.Background(), w); err != nil {
					return err
				}
				batch = append(batch, w)
			}
			return nil
		})
		require.NoError(b, err)
		out = append(out, batch...)
	}
	return out
}

// BenchmarkListPendingApprovals1k: GET /v1/approvals?state=pending&limit=1000
// over loopback, by a person, with 1,000 pending approvals (each a gated
// platform restart with its plan) among 2,000; client decode included.
func BenchmarkListPendingApprovals1k(b *testing.B) {
	for _, pg := range []bool{false, true} {
		b.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(b *testing.B) {
			e := testenv.New(b, testenv.Options{Postgres: pg})
			ctx := context.Background()
			mgmt, _, err := e.Service.CreateToken(auth.WithPrincipal(ctx, auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: e.Org.Token.ID}),
				core.CreateTokenInput{Kind: store.TokenAdmin, Name: "concierge", ActingWorkspaceID: e.Org.Platform.ID})
			require.NoError(b, err)
			agent := auth.WithPrincipal(ctx, auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: mgmt.ID, ActingWorkspaceID: e.Org.Platform.ID})
			for i := 0; i < 2000; i++ {
				_, err := e.Service.RestartWorkspace(agent, e.Org.Platform.ID, fmt.Sprintf("ask %d", i))
				var gated *core.ApprovalRequired
				require.True(b, errors.As(err, &gated), "gated: %v", err)
				if i%2 == 1 {
					_, err := e.Service.CancelApproval(agent, gated.Approval.ID)
					require.NoError(b, err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var list []map[string]any
				if err := e.Owner.Do(ctx, "GET", "/v1/approvals?state=pending&limit=1000", nil, &list); err != nil {
					b.Fatal(err)
				}
				if len(list) != 1000 {
					b.Fatalf("listed %d", len(list))
				}
			}
		})
	}
}
