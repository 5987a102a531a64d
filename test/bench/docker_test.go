package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/docker"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
	"github.com/orgplane/orgplane/internal/testenv"
)

// BenchmarkDockerBox: provision and explicit restart of one docker box
// running the reference agent (the static orgplane binary in a FROM
// scratch image, host network).
func BenchmarkDockerBox(b *testing.B) {
	c := provisiontest.RequireDocker(b)
	img := provisiontest.DockerImage(b, e2etest.Binary(b))
	label := provisiontest.RandomID(b)
	d, err := docker.New(docker.Config{Client: c, NetworkMode: "host", Init: true, StopGrace: 5 * time.Second,
		Labels: map[string]string{provisiontest.TestLabel: label}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	// Healthy by heartbeat only: a ready_after far beyond any heartbeat,
	// which must stay below the provision timeout.
	e := testenv.New(b, testenv.Options{Runtime: core.RuntimeConfig{PollInterval: 50 * time.Millisecond, ProvisionTimeout: 15 * time.Minute},
		Provisioners: map[string]provision.Provisioner{provision.RuntimeDocker: d}})
	ctx := context.Background()
	var created []string
	b.Cleanup(func() {
		for _, id := range created {
			_, _ = e.Admin.DeleteWorkspace(context.Background(), id, true)
		}
		e.Eventually(30*time.Second, func() bool {
			hs, err := d.List(context.Background())
			return err == nil && len(hs) == 0
		}, "containers removed")
	})
	events, cancel := e.Service.Events().Subscribe(e.Org.Org.ID)
	defer cancel()
	spec, _ := json.Marshal(map[string]any{"image": img, "command": []string{"/box", "agent"}, "ready_after_seconds": 600})
	b.Run("provision", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: fmt.Sprintf("d%d", seq.Add(1)), Runtime: "docker", Spec: spec})
			require.NoError(b, err)
			created = append(created, w.ID)
			waitHealthy(b, e, events, w.ID, 1)
		}
	})
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "r", Runtime: "docker", Spec: spec})
	require.NoError(b, err)
	created = append(created, w.ID)
	waitHealthy(b, e, events, w.ID, 1)
	benchRestarts(b, e, events, w.ID)
}
