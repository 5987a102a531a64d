package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/fake"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

// orgState is what a refused call must leave as it was.
type orgState struct {
	Workspaces []client.Workspace
	Globals    []client.SecretMeta
	Own        map[string][]client.SecretMeta
	Restarts   []client.RestartJob
}

func snapshot(t *testing.T, e *testenv.Env) orgState {
	t.Helper()
	ctx := context.Background()
	var s orgState
	var err error
	s.Workspaces, err = e.Admin.ListWorkspaces(ctx)
	require.NoError(t, err)
	for i := range s.Workspaces {
		// Box facts move on their own (the platform's bootstrap box); the
		// rows a refused call could touch are compared.
		w := &s.Workspaces[i]
		w.Status, w.Generation, w.UpdatedAt, w.LastError, w.Stale = "", 0, time.Time{}, "", false
	}
	s.Globals, err = e.Admin.ListSecrets(ctx, "")
	require.NoError(t, err)
	s.Own = map[string][]client.SecretMeta{}
	for _, w := range s.Workspaces {
		s.Own[w.ID], err = e.Admin.ListSecrets(ctx, w.ID)
		require.NoError(t, err)
	}
	s.Restarts, err = e.Admin.ListRestarts(ctx, "")
	require.NoError(t, err)
	return s
}

// requireRefused checks an API error's status and code.
func requireRefused(t *testing.T, err error, status int, code string) *client.Error {
	t.Helper()
	var ce *client.Error
	require.True(t, errors.As(err, &ce), "want a %d %s answer, got %v", status, code, err)
	require.Equal(t, status, ce.Status, ce.Message)
	require.Equal(t, code, ce.Code, ce.Message)
	return ce
}

func stoppedWorkspace(t *testing.T, e *testenv.Env, name, runtime string, spec string) client.Workspace {
	t.Helper()
	start := false
	w, err := e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{Name: name, Runtime: runtime, Spec: json.RawMessage(spec), Start: &start})
	require.NoError(t, err)
	return w
}

// TestNULValuesRefused: a value no box can be started with (a NUL byte in
// a secret, a spec env value or a command argument) is refused with 400
// invalid_value, dry run or not, and nothing changes.
func TestNULValuesRefused(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ctx := context.Background()
	w := stoppedWorkspace(t, e, "w", "process", `{"command":["box"],"ready_after_seconds":0}`)
	_, err := e.Admin.SetSecret(ctx, "", "KEPT", "ok", false)
	require.NoError(t, err)
	before := snapshot(t, e)

	for _, dry := range []bool{false, true} {
		_, err = e.Admin.SetSecret(ctx, "", "API_KEY", "abc\x00def", dry)
		requireRefused(t, err, 400, "invalid_value")
		_, err = e.Admin.SetSecret(ctx, w.ID, "API_KEY", "\x00", dry)
		requireRefused(t, err, 400, "invalid_value")
		_, err = e.Admin.SetSecret(ctx, "", "KEPT", "ok\x00", dry)
		requireRefused(t, err, 400, "invalid_value")
	}
	for _, spec := range []string{
		`{"command":["box","a\u0000b"]}`,
		`{"command":["box"],"env":{"MODE":"x\u0000"}}`,
	} {
		_, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "nul", Spec: json.RawMessage(spec)})
		requireRefused(t, err, 400, "invalid_value")
		_, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "nul", Runtime: "docker", Spec: json.RawMessage(strings.Replace(spec, "{", `{"image":"img",`, 1))})
		requireRefused(t, err, 400, "invalid_value")
		_, err = e.Admin.PatchWorkspace(ctx, w.ID, client.PatchWorkspace{Spec: json.RawMessage(spec)})
		requireRefused(t, err, 400, "invalid_value")
	}
	require.Equal(t, before, snapshot(t, e))
}

// TestEnvTooLargeRefused: a secret write or spec after which some box's
// env and command would pass the cap is refused with 422 env_too_large
// naming the workspaces; the dry run answers the same; nothing changes.
func TestEnvTooLargeRefused(t *testing.T) {
	t.Parallel()
	forEngines(t, testEnvTooLargeRefused)
}

// forEngines runs a test on SQLite and on Postgres (skipped when there is
// none, unless required).
func forEngines(t *testing.T, fn func(t *testing.T, postgres bool)) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, pg)
		})
	}
}

func testEnvTooLargeRefused(t *testing.T, postgres bool) {
	rt := fastRuntime()
	rt.MaxBoxEnvBytes = 200_000
	e := testenv.New(t, testenv.Options{Runtime: rt, Postgres: postgres})
	ctx := context.Background()
	w := stoppedWorkspace(t, e, "w", "process", `{"command":["box"],"ready_after_seconds":0}`)
	small := stoppedWorkspace(t, e, "small", "process", `{"command":["box"],"ready_after_seconds":0}`)
	ext := stoppedWorkspace(t, e, "ext", "external", `{}`)
	big := strings.Repeat("v", 60_000)
	for i := range 3 {
		_, err := e.Admin.SetSecret(ctx, "", fmt.Sprintf("G%d", i), big, false)
		require.NoError(t, err)
	}
	// small overrides G0 with a short value: it has room for more.
	_, err := e.Admin.SetSecret(ctx, small.ID, "G0", "short", false)
	require.NoError(t, err)
	before := snapshot(t, e)

	// A fourth global: every process box would be over the cap but small's
	// (and the external workspace's, which orgplane never starts).
	for _, dry := range []bool{true, false} {
		_, err = e.Admin.SetSecret(ctx, "", "G3", big, dry)
		ce := requireRefused(t, err, 422, "env_too_large")
		require.Contains(t, ce.Message, w.ID)
		require.Contains(t, ce.Message, e.Org.Platform.ID)
		require.NotContains(t, ce.Message, small.ID)
		require.NotContains(t, ce.Message, ext.ID)
		require.NotContains(t, ce.Message, big[:100], "never a value")
	}
	// A workspace secret over the cap for its own box.
	_, err = e.Admin.SetSecret(ctx, w.ID, "OWN", big, false)
	ce := requireRefused(t, err, 422, "env_too_large")
	require.Contains(t, ce.Message, w.ID)
	// Deleting small's override would uncover the 60 KB global: still fine
	// (3 x 60 KB fit); but a spec env that fills its box is not.
	spec := fmt.Sprintf(`{"command":["box"],"env":{"PAD":%q}}`, strings.Repeat("p", 60_000))
	_, err = e.Admin.PatchWorkspace(ctx, w.ID, client.PatchWorkspace{Spec: json.RawMessage(spec)})
	requireRefused(t, err, 422, "env_too_large")
	_, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "new", Spec: json.RawMessage(spec)})
	requireRefused(t, err, 422, "env_too_large")
	require.Equal(t, before, snapshot(t, e))

	// Below the cap is accepted: small has room for one more.
	_, err = e.Admin.SetSecret(ctx, small.ID, "OWN", big, false)
	require.NoError(t, err)
	// And a workspace delete that uncovers a global is checked too: small
	// now holds G0 "short" + G1 + G2 + OWN; uncovering the 60 KB G0 would
	// make four.
	_, err = e.Admin.DeleteSecret(ctx, small.ID, "G0", true)
	requireRefused(t, err, 422, "env_too_large")
}

// TestEnvSizeNeedsNoDecryption: the cap is checked from stored ciphertext
// lengths. Workspace secrets here are not decryptable at all (sealed for
// another row), yet a global write over the cap for some of them is refused
// naming exactly those, and one under it is accepted.
func TestEnvSizeNeedsNoDecryption(t *testing.T) {
	t.Parallel()
	forEngines(t, testEnvSizeNeedsNoDecryption)
}

func testEnvSizeNeedsNoDecryption(t *testing.T, postgres bool) {
	rt := fastRuntime()
	rt.MaxBoxEnvBytes = 100_000
	e := testenv.New(t, testenv.Options{Runtime: rt, Postgres: postgres})
	ctx := context.Background()
	const n = 300
	ids := make([]string, n)
	now := time.Now().UTC()
	require.NoError(t, e.Store.InTx(ctx, func(tx store.Store) error {
		for i := range n {
			ids[i] = fmt.Sprintf("w-bulk-%03d", i)
			if err := tx.InsertWorkspace(ctx, store.Workspace{ID: ids[i], OrgID: e.Org.Org.ID, ParentID: e.Org.Platform.ID,
				Name: ids[i], Kind: store.KindWorkspace, Runtime: core.RuntimeProcess, Spec: `{"command":["box"]}`,
				Status: core.StatusStopped, RestartPolicy: core.PolicyAuto, CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			size := 100
			if i%100 == 7 {
				size = 60_000
			}
			// Sealed as another workspace's row: decrypting it here fails.
			sec, err := e.Service.Keyring().Seal(store.Secret{OrgID: e.Org.Org.ID, WorkspaceID: "elsewhere", Key: "OWN"}, strings.Repeat("o", size))
			if err != nil {
				return err
			}
			sec.WorkspaceID, sec.Version, sec.CreatedAt, sec.UpdatedAt = ids[i], 1, now, now
			if err := tx.PutSecret(ctx, sec); err != nil {
				return err
			}
		}
		return nil
	}))
	_, err := e.Admin.SetSecret(ctx, "", "BIG", strings.Repeat("g", 50_000), true)
	ce := requireRefused(t, err, 422, "env_too_large")
	require.Contains(t, ce.Message, "3 workspace box(es)")
	for _, i := range []int{7, 107, 207} {
		require.Contains(t, ce.Message, ids[i])
	}
	require.NotContains(t, ce.Message, ids[8])
	_, err = e.Admin.SetSecret(ctx, "", "SMALL", strings.Repeat("g", 30_000), true)
	require.NoError(t, err)
}

// TestSpecRulesOfThisControlPlane: a runtime not enabled here, a negative
// ready_after_seconds (docker as process), and one the provision timeout
// would always cut short are refused; nothing changes.
func TestSpecRulesOfThisControlPlane(t *testing.T) {
	t.Parallel()
	rt := fastRuntime() // provision timeout 2s
	e := testenv.New(t, testenv.Options{Runtime: rt,
		Provisioners: map[string]provision.Provisioner{provision.RuntimeProcess: fake.New()}})
	ctx := context.Background()
	w := stoppedWorkspace(t, e, "w", "process", `{"command":["box"],"ready_after_seconds":0}`)
	before := snapshot(t, e)

	_, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "d", Runtime: "docker", Spec: json.RawMessage(`{"image":"img"}`)})
	ce := requireRefused(t, err, 422, "runtime_unavailable")
	require.Contains(t, ce.Message, "docker")
	for _, c := range []struct{ runtime, spec string }{
		{"docker", `{"image":"img","ready_after_seconds":-1}`},
		{"process", `{"command":["box"],"ready_after_seconds":-0.5}`},
		{"process", `{"command":["box"],"ready_after_seconds":2}`},
		{"process", `{"command":["box"],"ready_after_seconds":3600}`},
		{"docker", `{"image":"img","user":"root; rm"}`},
	} {
		_, err = e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "x", Runtime: c.runtime, Spec: json.RawMessage(c.spec)})
		requireRefused(t, err, 400, "invalid_spec")
		if c.runtime == "process" {
			_, err = e.Admin.PatchWorkspace(ctx, w.ID, client.PatchWorkspace{Spec: json.RawMessage(c.spec)})
			requireRefused(t, err, 400, "invalid_spec")
		}
	}
	require.Equal(t, before, snapshot(t, e))
	_, err = e.Admin.PatchWorkspace(ctx, w.ID, client.PatchWorkspace{Spec: json.RawMessage(`{"command":["box"],"ready_after_seconds":1.5}`)})
	require.NoError(t, err, "below the provision timeout")
}

// TestBoxSpecPublicKeys: the spec's own env is public (not masked in box
// output); a key a secret overrides, the secrets and the token are not.
func TestBoxSpecPublicKeys(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ctx := context.Background()
	_, err := e.Admin.SetSecret(ctx, "", "OVERRIDDEN", "secret-value", false)
	require.NoError(t, err)
	w, err := e.Admin.CreateWorkspace(ctx, client.CreateWorkspace{Name: "pub",
		Spec: json.RawMessage(`{"command":["box"],"env":{"LOG_LEVEL":"info","OVERRIDDEN":"plain"},"ready_after_seconds":0}`)})
	require.NoError(t, err)
	var spec provision.Spec
	require.Eventually(t, func() bool {
		for _, s := range e.Fake.Starts() {
			if s.WorkspaceID == w.ID {
				spec = s
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"LOG_LEVEL"}, spec.PublicKeys)
	require.Equal(t, "secret-value", spec.Env["OVERRIDDEN"])
}
