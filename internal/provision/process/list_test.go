package process_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/process"
)

// TestListFindsBoxesByTheirEnvironment: a box is found without its handle
// (a control plane that died before recording it), with a handle that a
// fresh provisioner can adopt and stop.
func TestListFindsBoxesByTheirEnvironment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.prov(process.Config{})
	ws := "wlisttestabcdefgh"
	h := e.start(p, ws, map[string]string{"ORGPLANE_WORKSPACE_ID": ws, "ORGPLANE_GENERATION": "7", "SECRET_X": "hidden-value"})
	other := e.prov(process.Config{})
	list, err := other.List(context.Background())
	require.NoError(t, err)
	var found *provision.Handle
	for i := range list {
		if list[i].WorkspaceID == ws {
			found = &list[i]
		}
	}
	require.NotNil(t, found, "box not listed")
	require.Equal(t, int64(7), found.Generation)
	require.Equal(t, h.ID, found.ID)
	require.Equal(t, h.StartTicks, found.StartTicks)
	st, err := other.Adopt(context.Background(), *found)
	require.NoError(t, err)
	require.True(t, st.Running)
}
