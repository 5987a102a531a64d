package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/docker"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
)

// TestDockerfileBuildsAStaticImage builds the repository's Dockerfile (from
// scratch: nothing is pulled) around a static orgplane binary, and runs the
// image as a box: its entrypoint is orgplane, as user nobody.
func TestDockerfileBuildsAStaticImage(t *testing.T) {
	c := provisiontest.RequireDocker(t)
	bin := provisiontest.BuildStaticBinary(t, "github.com/orgplane/orgplane/cmd/orgplane")
	dockerfile, err := os.ReadFile("../../../Dockerfile")
	require.NoError(t, err)
	binary, err := os.ReadFile(bin)
	require.NoError(t, err)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"orgplane", 0o755, binary}} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}))
		_, err := tw.Write(f.data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())

	tag := "orgplane-dockerfile-test:" + provisiontest.RandomID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{provisiontest.TestLabel: "image"}})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = c.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	out, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.NotContains(t, string(out), `"error"`, string(out))

	img, err := c.ImageInspect(ctx, tag)
	require.NoError(t, err)
	require.Equal(t, []string{"/orgplane"}, img.Config.Entrypoint)
	require.Equal(t, []string{"agent"}, img.Config.Cmd, "the default box command runs the reference agent")
	require.Equal(t, "65534:65534", img.Config.User)
	raw, _ := json.Marshal(img.RootFS.Layers)
	require.Len(t, img.RootFS.Layers, 1, "from scratch: one layer, the binary (%s)", raw)

	p, err := docker.New(docker.Config{Client: c, Labels: map[string]string{provisiontest.TestLabel: provisiontest.RandomID(t)}})
	require.NoError(t, err)
	defer p.Close()
	h, err := p.Start(ctx, provision.Spec{OrgID: "o", WorkspaceID: "ws-image", Generation: 1, Image: tag, Command: []string{"--help"}})
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Stop(context.Background(), h)) }()
	select {
	case st := <-p.Wait(ctx, h):
		require.Equal(t, 0, st.ExitCode, st.Reason)
	case <-ctx.Done():
		t.Fatal("orgplane --help did not end")
	}
	logs, err := p.Logs(ctx, "ws-image", 0)
	require.NoError(t, err)
	require.True(t, strings.Contains(string(logs), "serve"), "help names the serve command: %s", logs)
}
