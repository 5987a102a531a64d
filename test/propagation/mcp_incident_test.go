package propagation_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
)

type bearerRT struct{ token string }

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// mcpCall calls a tool and decodes its structured result.
func mcpCall(t *testing.T, cs *sdk.ClientSession, name string, args any, out any) {
	t.Helper()
	res, err := cs.CallTool(bg, &sdk.CallToolParams{Name: name, Arguments: args})
	require.NoError(t, err, name)
	text := res.Content[0].(*sdk.TextContent).Text
	require.False(t, res.IsError, "%s: %s", name, text)
	require.NoError(t, json.Unmarshal([]byte(text), out), name)
}

type secretOutcome struct {
	Status   string              `json:"status"`
	Result   *client.SecretWrite `json:"result"`
	Approval *client.Approval    `json:"approval"`
}

// TestIncidentOverMCP is the incident again, by the concierge's own means:
// the platform box's management token (from its real environment) writes a
// platform secret and a global secret through the MCP endpoint its
// environment names. The platform box is never touched. A global write
// that would restart more workspaces than the policy's threshold waits for
// a person: nothing restarts until the owner approves over HTTP.
func TestIncidentOverMCP(t *testing.T) {
	t.Parallel()
	p := up(t)
	P := p.platformID
	p.waitWS(P, 30*time.Second, "platform running", func(w client.Workspace) bool { return w.Status == "running" })
	agent := oneBox(t, p.url, P)
	mgmt := agent.env["ORGPLANE_MANAGEMENT_TOKEN"]
	require.NotEmpty(t, mgmt)
	require.Equal(t, p.url+"/mcp", agent.env["ORGPLANE_MCP_URL"])

	cs, err := sdk.NewClient(&sdk.Implementation{Name: "concierge"}, nil).Connect(bg, &sdk.StreamableClientTransport{
		Endpoint: agent.env["ORGPLANE_MCP_URL"], MaxRetries: -1, HTTPClient: &http.Client{Transport: bearerRT{mgmt}}}, nil)
	require.NoError(t, err)
	defer cs.Close()
	var who struct{ Principal client.Principal }
	mcpCall(t, cs, "whoami", nil, &who)
	require.Equal(t, P, who.Principal.ActingWorkspaceID)

	untouched := func(step string) {
		t.Helper()
		bs := scanBoxes(p.url)[P]
		require.Len(t, bs, 1, step)
		require.Equal(t, agent.pid, bs[0].pid, "%s: the platform's agent process was replaced", step)
		require.True(t, e2etest.ProcessAlive(agent.pid), step)
		require.EqualValues(t, 1, bs[0].gen(), step)
		w := p.get(P)
		require.EqualValues(t, 1, w.Generation, step)
		require.Equal(t, "running", w.Status, step)
	}
	workers := p.createAgents("worker-", 2, 2)
	W1, W2 := workers[0], workers[1]

	// The platform's own secret.
	var out secretOutcome
	mcpCall(t, cs, "set_secret", map[string]any{"workspace_id": P, "key": "CONCIERGE_KEY", "value": randomValue(t)}, &out)
	require.Equal(t, "done", out.Status)
	require.Equal(t, []client.Decision{{WorkspaceID: P, Action: "skip", Reason: "platform_root"}}, out.Result.Decisions)
	untouched("after the platform secret")
	require.True(t, p.get(P).Stale)

	// A global secret: the workers restart, the platform does not.
	mcpCall(t, cs, "set_secret", map[string]any{"key": "ORG_WIDE_KEY", "value": randomValue(t)}, &out)
	require.Equal(t, "done", out.Status)
	got := decisionsByWS(*out.Result)
	require.Equal(t, "platform_root", got[P].Reason)
	require.Equal(t, "restart", got[W1].Action)
	require.Equal(t, "restart", got[W2].Action)
	p.waitAll(workers, 60*time.Second, "workers restarted", func(w client.Workspace) bool {
		return w.Status == "running" && w.Generation == 2 && !w.Stale
	})
	untouched("after the global secret")

	// Above the threshold: the owner sets it to 1; two restarts are more.
	owner := client.New(p.url, readToken(t, filepath.Join(p.dir, "orgplane-data"), "owner.token"))
	pol, err := owner.GetPolicy(bg)
	require.NoError(t, err)
	one := 1
	g := pol.Gates
	_, err = owner.SetPolicy(bg, client.PutPolicy{Gates: &client.PutPolicyGates{PlatformRestart: &g.PlatformRestart,
		GlobalSecret: &g.GlobalSecret, WorkspaceDelete: &g.WorkspaceDelete, AdminToken: &g.AdminToken,
		WorkspaceProtection: &g.WorkspaceProtection}, RestartThreshold: &one, Quorum: &pol.Quorum,
		DefaultTTLSeconds: &pol.DefaultTTLSeconds, MaxTTLSeconds: &pol.MaxTTLSeconds})
	require.NoError(t, err)
	out = secretOutcome{}
	mcpCall(t, cs, "set_secret", map[string]any{"key": "ORG_WIDE_KEY", "value": randomValue(t)}, &out)
	require.Equal(t, "approval_required", out.Status)
	require.Nil(t, out.Result)
	require.Equal(t, "pending", out.Approval.State)
	require.Equal(t, "mcp", out.Approval.Requester.Via)
	require.Equal(t, P, out.Approval.Requester.WorkspaceID)
	// Nothing changed: no new version, no restart.
	globals, err := p.admin.ListSecrets(bg, "")
	require.NoError(t, err)
	for _, m := range globals {
		if m.Key == "ORG_WIDE_KEY" {
			require.EqualValues(t, 1, m.Version)
		}
	}
	var wait struct {
		Done     bool            `json:"done"`
		Approval client.Approval `json:"approval"`
	}
	mcpCall(t, cs, "wait_approval", map[string]any{"approval_id": out.Approval.ID, "timeout_seconds": 1}, &wait)
	require.False(t, wait.Done)
	for _, id := range workers {
		w := p.get(id)
		require.EqualValues(t, 2, w.Generation, "nothing restarts before a person approves")
		require.False(t, w.Stale)
	}
	untouched("while the approval is pending")

	// The owner approves over HTTP; orgplane executes the stored write.
	require.NoError(t, owner.Do(bg, http.MethodPost, "/v1/approvals/"+out.Approval.ID+"/decision", client.Decide{Decision: "approve"}, nil))
	mcpCall(t, cs, "wait_approval", map[string]any{"approval_id": out.Approval.ID, "timeout_seconds": 60}, &wait)
	require.True(t, wait.Done)
	require.Equal(t, "succeeded", wait.Approval.State)
	p.waitAll(workers, 60*time.Second, "workers restarted after the approval", func(w client.Workspace) bool {
		return w.Status == "running" && w.Generation == 3 && !w.Stale
	})
	untouched("after the approved global write")
	for _, j := range p.restarts(P) {
		require.Equal(t, "skipped", j.State)
		require.Equal(t, "platform_root", j.Reason)
	}
}

func readToken(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}
