package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	docker "github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/e2etest"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
)

// Docker boxes on the machine's engine, from a FROM scratch image that holds
// the static orgplane binary as /box (nothing can be pulled here). Host
// networking lets the containers reach the loopback control plane.
var dockerFlags = []string{"--docker", "on", "--docker-network", "host"}

// dockerEnv is one docker test's engine, image and control plane.
type dockerEnv struct {
	*server
	dk    *docker.Client
	image string
}

// TestDocker runs the box lifecycle on the real engine: its subtests share
// one image (built once) and each runs its own control plane.
func TestDocker(t *testing.T) {
	t.Parallel()
	dk := provisiontest.RequireDocker(t)
	image := provisiontest.DockerImage(t, e2etest.Binary(t))
	env := func(t *testing.T, flags ...string) *dockerEnv {
		return &dockerEnv{server: startServer(t, flags...), dk: dk, image: image}
	}

	t.Run("lifecycle", func(t *testing.T) {
		t.Parallel()
		testDockerLifecycle(t, env(t, dockerFlags...))
	})
	t.Run("crash", func(t *testing.T) {
		t.Parallel()
		testDockerCrash(t, env(t, dockerFlags...))
	})
	t.Run("adoption", func(t *testing.T) {
		t.Parallel()
		testDockerAdoption(t, env(t, dockerFlags...))
	})
	t.Run("failures", func(t *testing.T) {
		t.Parallel()
		// No network at all: an agent box cannot reach the control plane,
		// so it never heartbeats (the provision timeout case), and no box
		// of this control plane sends traffic anywhere.
		testDockerFailures(t, env(t, "--docker", "on", "--docker-network", "none",
			"--provision-timeout", "3s", "--max-provision-retries", "1"))
	})
}

// testDockerLifecycle: start (a labelled container with the effective env
// injected), logs, explicit restart (a new container, the old one removed,
// the old token revoked), delete (container removed), and a delete racing
// the start leaves no container either.
func testDockerLifecycle(t *testing.T, e *dockerEnv) {
	value := secretValue(t)
	_, err := e.admin.SetSecret(bg, "", "E2E_GLOBAL", value, false)
	require.NoError(t, err)
	w := e.create(client.CreateWorkspace{Name: "dagent", Runtime: "docker", Spec: spec(t, map[string]any{
		"image": e.image, "command": []string{"/box", "agent"}, "env": map[string]string{"FROM_SPEC": "spec-value"}})})
	e.waitStatus(w.ID, "running", 1, 30*time.Second)

	c1 := e.runningContainer(t, w.ID, 1)
	labels := c1.Config.Labels
	assert.Equal(t, "true", labels["orgplane.managed"])
	assert.Equal(t, e.orgID, labels["orgplane.org"])
	assert.Equal(t, w.ID, labels["orgplane.workspace"])
	assert.Equal(t, "1", labels["orgplane.generation"])
	assert.Equal(t, "host", string(c1.HostConfig.NetworkMode))
	env := envOf(c1)
	got, ok := env["E2E_GLOBAL"]
	assert.True(t, ok, "the global secret is injected")
	assert.True(t, got == value, "the global secret has its value in the container") // never print it
	assert.Equal(t, "spec-value", env["FROM_SPEC"])
	assert.Equal(t, w.ID, env["ORGPLANE_WORKSPACE_ID"])
	assert.Equal(t, "1", env["ORGPLANE_GENERATION"])
	assert.Equal(t, e.url, env["ORGPLANE_URL"])
	oldToken := env["ORGPLANE_TOKEN"]
	me, err := client.New(e.url, oldToken).Whoami(bg)
	require.NoError(t, err)
	assert.Equal(t, w.ID, me.WorkspaceID)

	var logs []byte
	eventually(t, 10*time.Second, func() bool {
		logs, err = e.admin.Logs(bg, w.ID, 10)
		return err == nil && strings.Contains(string(logs), "g1: starting")
	}, func() string { return fmt.Sprintf("docker logs: %q (err %v)", logs, err) })
	assert.Contains(t, e.cliOK("workspaces", "logs", w.ID, "--tail", "5"), "g1:")
	assert.False(t, strings.Contains(string(logs), value))

	_, err = e.admin.RestartWorkspace(bg, w.ID, "e2e docker restart")
	require.NoError(t, err)
	e.waitStatus(w.ID, "running", 2, 30*time.Second)
	c2 := e.runningContainer(t, w.ID, 2)
	assert.NotEqual(t, c1.ID, c2.ID, "a new container")
	e.waitContainerGone(t, c1.ID)
	_, err = client.New(e.url, oldToken).Whoami(bg)
	assert.Equal(t, http.StatusUnauthorized, apiStatus(err), "the old generation's token is revoked: %v", err)
	_, err = client.New(e.url, envOf(c2)["ORGPLANE_TOKEN"]).Whoami(bg)
	assert.NoError(t, err)

	_, err = e.admin.DeleteWorkspace(bg, w.ID, false)
	require.NoError(t, err)
	e.waitNoContainers(t, 20*time.Second, "orgplane.workspace="+w.ID)

	// Deleted while its container is being created and started: the
	// delete finds no box to stop yet; the start must not leave one.
	var racers []string
	for i := 0; i < 3; i++ {
		r := e.create(client.CreateWorkspace{Name: fmt.Sprintf("racer-%d", i), Runtime: "docker",
			Spec: spec(t, map[string]any{"image": e.image, "command": []string{"/box", "agent"}})})
		time.Sleep(time.Duration(i*100) * time.Millisecond)
		_, err := e.admin.DeleteWorkspace(bg, r.ID, false)
		require.NoError(t, err)
		racers = append(racers, r.ID)
	}
	time.Sleep(4 * time.Second) // let the starts that raced the deletes finish
	for _, id := range racers {
		e.waitNoContainers(t, 15*time.Second, "orgplane.workspace="+id)
		assert.Equal(t, "removed", e.get(id).Status)
	}
	e.waitNoContainers(t, 5*time.Second, "orgplane.org="+e.orgID)
}

// testDockerCrash: a container killed behind orgplane's back is noticed
// within seconds, recorded, and replaced by a new generation; the dead
// container is removed.
func testDockerCrash(t *testing.T, e *dockerEnv) {
	w := e.create(client.CreateWorkspace{Name: "dcrash", Runtime: "docker", Spec: spec(t, map[string]any{
		"image": e.image, "command": []string{"/box", "agent"}})})
	e.waitStatus(w.ID, "running", 1, 30*time.Second)
	c1 := e.runningContainer(t, w.ID, 1)
	killed := time.Now()
	_, err := e.dk.ContainerKill(bg, c1.ID, docker.ContainerKillOptions{Signal: "KILL"})
	require.NoError(t, err)

	var failed client.AuditEntry
	eventually(t, 10*time.Second, func() bool {
		for _, a := range e.audit(w.ID) {
			if a.Action == "box.failed" {
				failed = a
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("the container's death was not noticed: %v", e.actions(w.ID)) })
	assert.Less(t, failed.At.Sub(killed), 5*time.Second, "noticed within seconds")
	assert.Contains(t, string(failed.Detail), "exited with code 137")

	e.waitStatus(w.ID, "running", 2, 30*time.Second)
	c2 := e.runningContainer(t, w.ID, 2)
	assert.NotEqual(t, c1.ID, c2.ID)
	e.waitContainerGone(t, c1.ID)
	jobs, err := e.admin.ListRestarts(bg, w.ID)
	require.NoError(t, err)
	require.NotEmpty(t, jobs)
	assert.Equal(t, "box_failed", jobs[0].Reason)

	_, err = e.admin.DeleteWorkspace(bg, w.ID, false)
	require.NoError(t, err)
	e.waitNoContainers(t, 20*time.Second, "orgplane.org="+e.orgID)
}

// testDockerAdoption: kill -9 of the control plane leaves containers
// running; started again it adopts them (same container, generation
// unchanged), and one that died meanwhile is failed ("missing") and
// replaced.
func testDockerAdoption(t *testing.T, e *dockerEnv) {
	sp := spec(t, map[string]any{"image": e.image, "command": []string{"/box", "agent"}})
	keep := e.create(client.CreateWorkspace{Name: "keep", Runtime: "docker", Spec: sp})
	doomed := e.create(client.CreateWorkspace{Name: "doomed", Runtime: "docker", Spec: sp})
	e.waitStatus(keep.ID, "running", 1, 30*time.Second)
	e.waitStatus(doomed.ID, "running", 1, 30*time.Second)
	cKeep, cDoomed := e.runningContainer(t, keep.ID, 1), e.runningContainer(t, doomed.ID, 1)

	e.proc.Kill()
	_, err := e.dk.ContainerKill(bg, cDoomed.ID, docker.ContainerKillOptions{Signal: "KILL"})
	require.NoError(t, err)
	e.start()

	w := e.get(keep.ID)
	assert.Equal(t, "running", w.Status)
	assert.Equal(t, int64(1), w.Generation, "generation unchanged")
	ids, err := containersOf(bg, e.dk, "orgplane.workspace="+keep.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{cKeep.ID}, ids, "the same container, not a duplicate")
	assert.True(t, e.inspect(t, cKeep.ID).State.Running)

	found := false
	eventually(t, 10*time.Second, func() bool {
		for _, a := range e.audit(doomed.ID) {
			found = found || (a.Action == "box.failed" && strings.Contains(string(a.Detail), "missing"))
		}
		return found
	}, func() string { return fmt.Sprintf("no box.failed (missing): %v", e.actions(doomed.ID)) })
	e.waitStatus(doomed.ID, "running", 2, 30*time.Second)
	e.waitContainerGone(t, cDoomed.ID)

	// The adopted box keeps heartbeating and stays running.
	time.Sleep(4 * time.Second)
	w = e.get(keep.ID)
	assert.Equal(t, "running", w.Status)
	assert.Equal(t, int64(1), w.Generation)

	for _, id := range []string{keep.ID, doomed.ID} {
		_, err := e.admin.DeleteWorkspace(bg, id, false)
		require.NoError(t, err)
	}
	e.waitNoContainers(t, 20*time.Second, "orgplane.org="+e.orgID)
}

// testDockerFailures: each way a docker box fails ends failed with a
// reason after the bounded retries, and deleting leaves no container.
func testDockerFailures(t *testing.T, e *dockerEnv) {
	cases := []struct {
		name   string
		spec   map[string]any
		reason []string
	}{
		{name: "command-not-in-image", spec: map[string]any{"image": e.image, "command": []string{"/no-such-binary"}},
			reason: []string{"/no-such-binary", "no such file or directory"}},
		{name: "exits-at-once", spec: map[string]any{"image": e.image, "command": []string{"/box", "no-such-subcommand"}},
			reason: []string{"exited with code 1", "unknown command"}},
		{name: "image-missing", spec: map[string]any{"image": "orgplane-e2e/missing:0"},
			reason: []string{"no such image"}},
	}
	// A box that could only become healthy by heartbeat (a ready_after the
	// provision timeout cuts short) is refused up front: with a command,
	// orgplane cannot tell that it heartbeats, and a plain box would be
	// guaranteed to fail.
	_, err := e.admin.CreateWorkspace(bg, client.CreateWorkspace{Name: "never-healthy", Runtime: "docker",
		Spec: spec(t, map[string]any{"image": e.image, "command": []string{"/box", "agent"}, "ready_after_seconds": 60})})
	require.Equal(t, http.StatusBadRequest, apiStatus(err), "%v", err)
	require.Contains(t, err.Error(), "provision timeout")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &dockerEnv{server: e.with(t), dk: e.dk, image: e.image}
			w := e.create(client.CreateWorkspace{Name: tc.name, Runtime: "docker", Spec: spec(t, tc.spec)})
			w = e.waitGaveUp(w.ID, 45*time.Second)
			for _, r := range tc.reason {
				assert.Contains(t, strings.ToLower(w.LastError), strings.ToLower(r))
			}
			assert.Equal(t, int64(2), w.Generation, "the first provision and one retry")
			assert.Equal(t, 2, e.actions(w.ID)["box.failed"])
			_, err := e.admin.DeleteWorkspace(bg, w.ID, false)
			require.NoError(t, err)
			e.waitNoContainers(t, 20*time.Second, "orgplane.workspace="+w.ID)
		})
	}
}

// runningContainer returns the workspace's one container, which must be
// running and labelled with generation gen.
func (e *dockerEnv) runningContainer(t *testing.T, wsID string, gen int64) container.InspectResponse {
	t.Helper()
	var ids []string
	eventually(t, 15*time.Second, func() bool {
		var err error
		ids, err = containersOf(bg, e.dk, "orgplane.workspace="+wsID, fmt.Sprintf("orgplane.generation=%d", gen))
		return err == nil && len(ids) == 1
	}, func() string { return fmt.Sprintf("workspace %s generation %d: containers %v", wsID, gen, ids) })
	c := e.inspect(t, ids[0])
	require.True(t, c.State.Running, "container of %s generation %d is %s", wsID, gen, c.State.Status)
	return c
}

func (e *dockerEnv) inspect(t *testing.T, id string) container.InspectResponse {
	t.Helper()
	res, err := e.dk.ContainerInspect(bg, id, docker.ContainerInspectOptions{})
	require.NoError(t, err)
	return res.Container
}

// waitContainerGone waits until the engine no longer knows the container.
func (e *dockerEnv) waitContainerGone(t *testing.T, id string) {
	t.Helper()
	eventually(t, 20*time.Second, func() bool {
		_, err := e.dk.ContainerInspect(bg, id, docker.ContainerInspectOptions{})
		return cerrdefs.IsNotFound(err)
	}, func() string { return fmt.Sprintf("container %.12s still exists", id) })
}

// waitNoContainers waits until no orgplane container has the labels.
func (e *dockerEnv) waitNoContainers(t *testing.T, timeout time.Duration, labels ...string) {
	t.Helper()
	var ids []string
	eventually(t, timeout, func() bool {
		var err error
		ids, err = containersOf(context.Background(), e.dk, labels...)
		return err == nil && len(ids) == 0
	}, func() string { return fmt.Sprintf("containers left with %v: %v", labels, ids) })
}

// envOf returns a container's environment. Values may be secret: compare,
// never print.
func envOf(c container.InspectResponse) map[string]string {
	env := map[string]string{}
	for _, kv := range c.Config.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}
