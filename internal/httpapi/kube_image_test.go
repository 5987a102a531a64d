package httpapi_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/fake"
	"github.com/orgplane/orgplane/internal/testenv"
)

// A kubernetes workspace whose spec names no image runs the control
// plane's agent image (--kube-agent-image); without one configured such a
// spec is refused with nothing created.
func TestKubeAgentImage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, image := range []string{"", "registry.example/orgplane:v1"} {
		f := fake.New()
		rt := fastRuntime()
		rt.KubeAgentImage = image
		e := newEnv(t, testenv.Options{Runtime: rt, Provisioners: map[string]provision.Provisioner{
			provision.RuntimeProcess: f, "kubernetes": f}})
		w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "k", Runtime: "kubernetes",
			Spec: json.RawMessage(`{"ready_after_seconds":0}`)})
		if image == "" {
			require.Error(t, err)
			var ae *client.Error
			require.ErrorAs(t, err, &ae)
			require.Equal(t, 400, ae.Status)
			require.Equal(t, "invalid_spec", ae.Code)
			list, err := e.Admin.ListWorkspaces(ctx)
			require.NoError(t, err)
			require.Len(t, list, 1, "nothing created")
			continue
		}
		require.NoError(t, err)
		waitStatus(t, e.Admin, w.ID, "running", 1)
		var got provision.Spec
		for _, sp := range f.Starts() {
			if sp.WorkspaceID == w.ID {
				got = sp
			}
		}
		require.Equal(t, image, got.Image)
		require.JSONEq(t, `{"image":"`+image+`","ready_after_seconds":0}`, string(got.RuntimeSpec))
	}
}
