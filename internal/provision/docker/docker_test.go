package docker_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/docker"
	"github.com/orgplane/orgplane/internal/provision/provisiontest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// suite is shared by the parallel subtests of TestDocker: one engine
// client, one image, one instance label that marks every container they
// make.
type suite struct {
	c        *client.Client
	image    string
	instance string
	logs     *syncBuffer
}

func (s *suite) prov(t *testing.T, grace time.Duration) *docker.Provisioner {
	t.Helper()
	p, err := docker.New(docker.Config{
		Client:      s.c,
		NetworkMode: "host", // the box reaches the test's 127.0.0.1 servers
		Labels:      map[string]string{provisiontest.TestLabel: s.instance},
		StopGrace:   grace,
		Logger:      slog.New(slog.NewTextHandler(s.logs, nil)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// start starts a box and removes it at cleanup whatever happens.
func (s *suite) start(t *testing.T, p *docker.Provisioner, spec provision.Spec) provision.Handle {
	t.Helper()
	if spec.Image == "" {
		spec.Image = s.image
	}
	if spec.OrgID == "" {
		spec.OrgID = "org1"
	}
	h, err := p.Start(context.Background(), spec)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, p.Stop(ctx, h))
	})
	return h
}

func waitLog(t *testing.T, p *docker.Provisioner, ws, want string) string {
	t.Helper()
	var out string
	require.Eventually(t, func() bool {
		b, err := p.Logs(context.Background(), ws, 0)
		require.NoError(t, err)
		out = string(b)
		return strings.Contains(out, want)
	}, 20*time.Second, 50*time.Millisecond, "log of %s never contained %q", ws, want)
	return out
}

func receive(t *testing.T, ch <-chan provision.State, within time.Duration) provision.State {
	t.Helper()
	select {
	case st, ok := <-ch:
		require.True(t, ok, "wait channel closed without a state")
		return st
	case <-time.After(within):
		t.Fatalf("no exit state within %s", within)
		return provision.State{}
	}
}

func (s *suite) containers(t *testing.T, f client.Filters) []string {
	t.Helper()
	res, err := s.c.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	require.NoError(t, err)
	var ids []string
	for _, c := range res.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestDocker(t *testing.T) {
	s := &suite{
		c:        provisiontest.RequireDocker(t),
		image:    provisiontest.DockerImage(t, provisiontest.TestBox(t)),
		instance: provisiontest.RandomID(t),
		logs:     &syncBuffer{},
	}
	// Runs after every subtest's cleanup (and before the image goes): a
	// container left behind is a failure, and is removed all the same.
	t.Cleanup(func() {
		mine := make(client.Filters).Add("label", provisiontest.TestLabel+"="+s.instance)
		left := s.containers(t, mine)
		for _, id := range left {
			_, _ = s.c.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
		}
		require.Empty(t, left, "containers left behind")
	})

	t.Run("Conformance", func(t *testing.T) {
		t.Parallel()
		provisiontest.Conformance(t, provisiontest.Backend{
			New: func(t *testing.T) provision.Provisioner { return s.prov(t, 5*time.Second) },
			Spec: func(t *testing.T, ws string, env map[string]string, args ...string) provision.Spec {
				return provision.Spec{OrgID: "org1", WorkspaceID: ws, Generation: 1, Image: s.image,
					Command: append([]string{"/box"}, args...), Env: env}
			},
		})
	})

	t.Run("NodeIsTheEngine", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, 5*time.Second)
		info, err := s.c.Info(context.Background(), client.InfoOptions{})
		require.NoError(t, err)
		require.NotEmpty(t, info.Info.ID)
		require.Equal(t, "docker:"+info.Info.ID, p.Node(), "docker boxes belong to their engine")
		require.Equal(t, p.Node(), p.Node())
	})

	t.Run("StartEnvLabelsAndHostNetwork", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
		}))
		t.Cleanup(srv.Close)
		p := s.prov(t, 5*time.Second)
		const secret = "s3cr3t-value-that-must-not-leak"
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{
			WorkspaceID: ws, Generation: 7,
			Env:     map[string]string{"A_SECRET": secret, "ORGPLANE_URL": srv.URL},
			Command: []string{"/box", "-env", "A_SECRET,NOT_SET", "-env-keys", "-stderr", "to stderr", "-get", srv.URL + "/healthz"},
		})
		require.Equal(t, provision.RuntimeDocker, h.Runtime)
		require.Equal(t, int64(7), h.Generation)
		require.WithinDuration(t, time.Now(), h.StartedAt, time.Minute)

		// stderr is demultiplexed into the same output (its order relative
		// to stdout is the engine's, so only its presence is checked).
		waitLog(t, p, ws, "to stderr\n")
		out := waitLog(t, p, ws, "ready")
		require.Contains(t, out, "env A_SECRET=set\n")
		require.Contains(t, out, "env NOT_SET=unset\n")
		require.Contains(t, out, "get status=200\n", "host network: the box reaches 127.0.0.1")
		require.Equal(t, int32(1), hits.Load())
		line := out[strings.Index(out, "env-keys ")+len("env-keys "):]
		keys := strings.Split(line[:strings.IndexByte(line, '\n')], ",")
		require.Subset(t, keys, []string{"A_SECRET", "ORGPLANE_URL"})
		for _, k := range keys {
			// The engine adds these few; nothing of the control plane's env.
			require.Contains(t, []string{"A_SECRET", "ORGPLANE_URL", "PATH", "HOSTNAME", "HOME"}, k)
		}

		ins, err := s.c.ContainerInspect(context.Background(), h.ID, client.ContainerInspectOptions{})
		require.NoError(t, err)
		require.Equal(t, "/orgplane-"+ws+"-g7", ins.Container.Name)
		l := ins.Container.Config.Labels
		require.Equal(t, "true", l[docker.LabelManaged])
		require.Equal(t, "org1", l[docker.LabelOrg])
		require.Equal(t, ws, l[docker.LabelWorkspace])
		require.Equal(t, "7", l[docker.LabelGeneration])
		require.Equal(t, s.instance, l[provisiontest.TestLabel])
		require.Equal(t, "host", string(ins.Container.HostConfig.NetworkMode))

		st, err := p.Inspect(context.Background(), h)
		require.NoError(t, err)
		require.True(t, st.Running)
		require.NotContains(t, out, secret)
		require.NotContains(t, s.logs.String(), secret)
	})

	t.Run("UnprivilegedUserAndNoMounts", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, 5*time.Second)
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1, Command: []string{"/box", "-user"}})
		out := waitLog(t, p, ws, "ready")
		require.Contains(t, out, "uid=65534 gid=65534 groups=65534\n", "nobody, whatever the image says")
		ins, err := s.c.ContainerInspect(context.Background(), h.ID, client.ContainerInspectOptions{})
		require.NoError(t, err)
		require.Equal(t, docker.DefaultUser, ins.Container.Config.User)
		require.Empty(t, ins.Container.HostConfig.Binds, "nothing of the host, the data dir least of all")
		require.Empty(t, ins.Container.HostConfig.Mounts)
		require.Empty(t, ins.Container.Mounts)
		require.Contains(t, ins.Container.HostConfig.SecurityOpt, "no-new-privileges")

		// The spec may name another user.
		ws2 := "ws-" + provisiontest.RandomID(t)
		s.start(t, p, provision.Spec{WorkspaceID: ws2, Generation: 1, User: "1234:5678", Command: []string{"/box", "-user"}})
		require.Contains(t, waitLog(t, p, ws2, "ready"), "uid=1234 gid=5678")
	})

	t.Run("LogsMaskWhatTheBoxWasStartedWith", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, 5*time.Second)
		ws := "ws-" + provisiontest.RandomID(t)
		const secret, token = "docker-secret-value", "op_workspace_t9_DOCKERTOKEN"
		s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1,
			Env:        map[string]string{"API_KEY": secret, "ORGPLANE_TOKEN": token, "PIN": "q7", "ORGPLANE_WORKSPACE_ID": ws, "LOG_LEVEL": "info"},
			PublicKeys: []string{"LOG_LEVEL"},
			Command:    []string{"/box", "-leak", "API_KEY,ORGPLANE_TOKEN,PIN,ORGPLANE_WORKSPACE_ID,LOG_LEVEL"}})
		// A new provisioner knows nothing but what the container holds: as
		// after a control-plane restart.
		q := s.prov(t, 5*time.Second)
		out := waitLog(t, q, ws, "ready")
		require.Contains(t, out, "leak API_KEY=[REDACTED]\n")
		require.Contains(t, out, "leak ORGPLANE_TOKEN=[REDACTED]\n")
		require.Contains(t, out, "leak PIN=[REDACTED]\n", "short values too, as whole words")
		require.Contains(t, out, "leak ORGPLANE_WORKSPACE_ID="+ws+"\n", "ids are not secret")
		require.Contains(t, out, "leak LOG_LEVEL=info\n", "nor the spec's own env")
		require.NotContains(t, out, secret)
		require.NotContains(t, out, "DOCKERTOKEN")
		require.NotContains(t, out, "PATH=[REDACTED]", "what the image sets is not masked")
	})

	t.Run("StopSendsSIGTERM", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, 5*time.Second)
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1, Command: []string{"/box", "-on-term=exit"}})
		waitLog(t, p, ws, "ready")

		w := p.Wait(context.Background(), h)
		begin := time.Now()
		require.NoError(t, p.Stop(context.Background(), h))
		require.Less(t, time.Since(begin), 4*time.Second, "a box that handles SIGTERM stops without waiting out the grace")
		// Exit code 0 is the box's own SIGTERM handler; a kill would be 137.
		require.Equal(t, provision.State{Exited: true, ExitCode: 0, Reason: "exited with code 0"}, receive(t, w, 10*time.Second))

		_, err := p.Inspect(context.Background(), h)
		require.ErrorIs(t, err, provision.ErrNotFound, "Stop removes the container")
	})

	t.Run("StopKillsABoxThatIgnoresSIGTERMAfterTheGrace", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, time.Second)
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1, Command: []string{"/box", "-on-term=ignore"}})
		waitLog(t, p, ws, "ready")

		w := p.Wait(context.Background(), h)
		begin := time.Now()
		require.NoError(t, p.Stop(context.Background(), h))
		require.GreaterOrEqual(t, time.Since(begin), time.Second)
		require.Equal(t, 137, receive(t, w, 10*time.Second).ExitCode)
	})

	t.Run("StopIsIdempotent", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, time.Second)
		ctx := context.Background()
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1, Command: []string{"/box"}})
		require.NoError(t, p.Stop(ctx, h))
		require.NoError(t, p.Stop(ctx, h))
		_, err := p.Inspect(ctx, h)
		require.ErrorIs(t, err, provision.ErrNotFound)
		_, err = p.Adopt(ctx, h)
		require.ErrorIs(t, err, provision.ErrNotFound)
		require.Equal(t, "container removed", receive(t, p.Wait(ctx, h), 5*time.Second).Reason)

		unknown := provision.Handle{WorkspaceID: ws, Generation: 1, ID: "no-such-container-" + provisiontest.RandomID(t)}
		require.NoError(t, p.Stop(ctx, unknown))
	})

	t.Run("WaitReportsACrashWithItsExitCode", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, time.Second)
		ctx := context.Background()
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1, Command: []string{"/box", "-exit-after", "500ms", "-exit-code", "3"}})
		w := p.Wait(ctx, h)

		want := provision.State{Exited: true, ExitCode: 3, Reason: "exited with code 3"}
		require.Equal(t, want, receive(t, w, 20*time.Second))
		st, err := p.Inspect(ctx, h)
		require.NoError(t, err, "an exited container stays until Stop")
		require.Equal(t, want, st)
		require.Equal(t, want, receive(t, p.Wait(ctx, h), 5*time.Second))
		require.Contains(t, waitLog(t, p, ws, "ready"), "ready", "logs outlive the exit")
	})

	t.Run("WaitEndsWithItsContext", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, time.Second)
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1, Command: []string{"/box"}})
		ctx, cancel := context.WithCancel(context.Background())
		w := p.Wait(ctx, h)
		cancel()
		select {
		case st, ok := <-w:
			require.False(t, ok, "closed without a value, got %+v", st)
		case <-time.After(10 * time.Second):
			t.Fatal("wait channel not closed after ctx ended")
		}
	})

	t.Run("AdoptAfterControlPlaneRestart", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		first := s.prov(t, 5*time.Second)
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, first, provision.Spec{WorkspaceID: ws, Generation: 2, Command: []string{"/box", "-on-term=exit"}})
		waitLog(t, first, ws, "ready") // its SIGTERM handler is in place
		require.NoError(t, first.Close())

		// A new instance with its own engine client, as after a restart.
		second, err := docker.New(docker.Config{
			Labels:    map[string]string{provisiontest.TestLabel: s.instance},
			StopGrace: 5 * time.Second,
			Logger:    slog.New(slog.NewTextHandler(s.logs, nil)),
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, second.Close()) })
		st, err := second.Adopt(ctx, h)
		require.NoError(t, err)
		require.True(t, st.Running)
		st, err = second.Inspect(ctx, h)
		require.NoError(t, err)
		require.True(t, st.Running)

		w := second.Wait(ctx, h)
		require.NoError(t, second.Stop(ctx, h))
		require.Equal(t, 0, receive(t, w, 10*time.Second).ExitCode)
		_, err = first.Inspect(ctx, h)
		require.ErrorIs(t, err, provision.ErrNotFound)
	})

	t.Run("ForeignContainersAreNeverTouched", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		p := s.prov(t, time.Second)
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1, Command: []string{"/box"}})

		// The docker analogue of a reused pid: the id names a container
		// that is not this box.
		other := h
		other.WorkspaceID = "someone-else"
		require.NoError(t, p.Stop(ctx, other))
		_, err := p.Inspect(ctx, other)
		require.ErrorIs(t, err, provision.ErrNotFound)
		_, err = p.Adopt(ctx, other)
		require.ErrorIs(t, err, provision.ErrNotFound)
		older := h
		older.Generation = 0
		require.NoError(t, p.Stop(ctx, older))

		// Another control plane (another instance label) neither sees nor stops it.
		stranger, err := docker.New(docker.Config{Client: s.c, Labels: map[string]string{provisiontest.TestLabel: "not-" + s.instance},
			Logger: slog.New(slog.NewTextHandler(s.logs, nil))})
		require.NoError(t, err)
		require.NoError(t, stranger.Stop(ctx, h))
		hs, err := stranger.List(ctx)
		require.NoError(t, err)
		require.NotContains(t, hs, h)

		st, err := p.Inspect(ctx, h)
		require.NoError(t, err)
		require.True(t, st.Running, "the box survived every foreign handle")
	})

	t.Run("LogsTail", func(t *testing.T) {
		t.Parallel()
		p := s.prov(t, time.Second)
		ctx := context.Background()
		ws := "ws-" + provisiontest.RandomID(t)
		h := s.start(t, p, provision.Spec{WorkspaceID: ws, Generation: 1,
			Command: []string{"/box", "-lines", "50", "-exit-after", "0s"}})
		receive(t, p.Wait(ctx, h), 20*time.Second)

		out, err := p.Logs(ctx, ws, 2)
		require.NoError(t, err)
		require.Equal(t, "line 49\nready\n", string(out))
		all, err := p.Logs(ctx, ws, 0)
		require.NoError(t, err)
		require.Contains(t, string(all), "line 0\n")
		require.Equal(t, 51, strings.Count(string(all), "\n"))

		out, err = p.Logs(ctx, "ws-never-ran-"+provisiontest.RandomID(t), 10)
		require.NoError(t, err)
		require.Empty(t, out)
	})

	t.Run("ListFindsOrphans", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		// A label of its own, so the other subtests' boxes stay out of sight.
		p, err := docker.New(docker.Config{Client: s.c, Labels: map[string]string{provisiontest.TestLabel: s.instance, "orgplane.test.list": "1"},
			Logger: slog.New(slog.NewTextHandler(s.logs, nil))})
		require.NoError(t, err)
		wsA, wsB := "ws-a-"+provisiontest.RandomID(t), "ws-b-"+provisiontest.RandomID(t)
		ha := s.start(t, p, provision.Spec{WorkspaceID: wsA, Generation: 1, Command: []string{"/box"}})
		hb := s.start(t, p, provision.Spec{WorkspaceID: wsB, Generation: 4, Command: []string{"/box", "-exit-after", "0s"}})

		hs, err := p.List(ctx)
		require.NoError(t, err)
		require.Len(t, hs, 2)
		byID := map[string]provision.Handle{hs[0].ID: hs[0], hs[1].ID: hs[1]}
		for _, want := range []provision.Handle{ha, hb} {
			got, ok := byID[want.ID]
			require.True(t, ok, "List misses %s", want.WorkspaceID)
			require.Equal(t, provision.RuntimeDocker, got.Runtime)
			require.Equal(t, want.WorkspaceID, got.WorkspaceID)
			require.Equal(t, want.Generation, got.Generation)
		}

		require.NoError(t, p.Stop(ctx, ha))
		hs, err = p.List(ctx)
		require.NoError(t, err)
		require.Len(t, hs, 1)
		require.Equal(t, hb.ID, hs[0].ID)
	})

	t.Run("FailedStartLeavesNothingAndLeaksNoSecret", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		p := s.prov(t, time.Second)
		const secret = "tok-9f8e7d6c5b4a"
		ws := "ws-" + provisiontest.RandomID(t)
		spec := provision.Spec{WorkspaceID: ws, Generation: 1, Image: s.image,
			Env: map[string]string{"TOKEN": secret}, Command: []string{"/nonexistent-" + secret}}
		_, err := p.Start(ctx, spec)
		require.Error(t, err)
		require.NotContains(t, err.Error(), secret)

		spec.Image = "orgplane-provisiontest/no-such-image:" + provisiontest.RandomID(t)
		spec.Command = nil
		_, err = p.Start(ctx, spec)
		require.Error(t, err)
		require.True(t, cerrdefs.IsNotFound(err) || strings.Contains(err.Error(), "No such image"), err.Error())

		require.Empty(t, s.containers(t, make(client.Filters).Add("label", docker.LabelWorkspace+"="+ws)),
			"a container that failed to start is removed")
		require.NotContains(t, s.logs.String(), secret)
	})

	t.Run("ReservedLabelsAreRefused", func(t *testing.T) {
		t.Parallel()
		_, err := docker.New(docker.Config{Client: s.c, Labels: map[string]string{docker.LabelWorkspace: "x"}})
		require.Error(t, err)
	})
}
