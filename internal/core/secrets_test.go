package core_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/client"
	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/testenv"
)

func adminCtx(e *testenv.Env) context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.KindAdmin, OrgID: e.Org.Org.ID, TokenID: e.Org.Token.ID})
}

func rawDB(t *testing.T, e *testenv.Env) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+strings.TrimPrefix(e.DBURL, "sqlite:")+"?_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func newWorkspace(t *testing.T, e *testenv.Env, name string) client.Workspace {
	t.Helper()
	start := false
	w, err := e.Admin.CreateWorkspace(context.Background(), client.CreateWorkspace{Name: name, Spec: plainSpec, Start: &start})
	require.NoError(t, err)
	return w
}

func TestEffectiveEnvMergeAndOverride(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ctx := adminCtx(e)
	w := newWorkspace(t, e, "w1")
	other := newWorkspace(t, e, "w2")
	_, err := e.Service.SetSecret(ctx, "", "SHARED", "global", false)
	require.NoError(t, err)
	_, err = e.Service.SetSecret(ctx, "", "ONLY_GLOBAL", "g", false)
	require.NoError(t, err)
	_, err = e.Service.SetSecret(ctx, w.ID, "SHARED", "mine", false)
	require.NoError(t, err)
	_, err = e.Service.SetSecret(ctx, w.ID, "OWN", "o", false)
	require.NoError(t, err)

	env, fp, err := e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"SHARED": "mine", "ONLY_GLOBAL": "g", "OWN": "o"}, env)
	env2, fp2, err := e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, other.ID)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"SHARED": "global", "ONLY_GLOBAL": "g"}, env2)
	require.NotEqual(t, fp, fp2)

	list, err := e.Service.ListSecrets(ctx, w.ID)
	require.NoError(t, err)
	got := map[string]string{}
	for _, m := range list {
		got[m.Key] = m.Scope()
		if m.Key == "SHARED" {
			require.True(t, m.OverridesGlobal)
		}
	}
	require.Equal(t, map[string]string{"SHARED": "workspace", "ONLY_GLOBAL": "global", "OWN": "workspace"}, got)

	// Every set bumps the version; the same value again still bumps it.
	res, err := e.Service.SetSecret(ctx, w.ID, "OWN", "o", false)
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Version)
	_, fp3, err := e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, fp, fp3, "same bytes, same fingerprint")

	// Only the workspace's own token reads values.
	_, err = e.Service.SecretValues(ctx, w.ID)
	require.Equal(t, 403, core.AsError(err).Status)
	wsCtx := auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.KindWorkspace, OrgID: e.Org.Org.ID, WorkspaceID: w.ID, TokenID: "t"})
	vals, err := e.Service.SecretValues(wsCtx, w.ID)
	require.NoError(t, err)
	require.Equal(t, env, vals)
	_, err = e.Service.SecretValues(wsCtx, other.ID)
	require.Equal(t, 404, core.AsError(err).Status)
}

func TestTamperedAndSwappedCiphertextsFailClosed(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ctx := adminCtx(e)
	a := newWorkspace(t, e, "a")
	b := newWorkspace(t, e, "b")
	_, err := e.Service.SetSecret(ctx, a.ID, "TOKEN_A", "value-a", false)
	require.NoError(t, err)
	_, err = e.Service.SetSecret(ctx, b.ID, "TOKEN_B", "value-b", false)
	require.NoError(t, err)
	_, err = e.Service.SetSecret(ctx, "", "GLOBAL_X", "gx", false)
	require.NoError(t, err)
	db := rawDB(t, e)

	// Swap: copy b's ciphertext into a's row.
	_, err = db.Exec(`UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE key = 'TOKEN_B') WHERE key = 'TOKEN_A'`)
	require.NoError(t, err)
	_, _, err = e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, a.ID)
	require.Error(t, err)
	require.Contains(t, err.Error(), "TOKEN_A")
	require.NotContains(t, err.Error(), "value-")

	// Tamper: flip a byte of the global's ciphertext: every workspace's env
	// fails, naming the key; never a partial env.
	_, err = db.Exec(`UPDATE secrets SET ciphertext = CAST(substr(ciphertext, 1, 20) || X'00' || substr(ciphertext, 22) AS BLOB) WHERE key = 'GLOBAL_X'`)
	require.NoError(t, err)
	env, _, err := e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, b.ID)
	require.Error(t, err)
	require.Nil(t, env)
	require.Contains(t, err.Error(), "GLOBAL_X")
}

func TestWrongMasterKeyRefused(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	other, err := crypto.GenerateMasterKey()
	require.NoError(t, err)
	_, err = core.OpenKeyring(context.Background(), e.Store, other)
	require.Error(t, err)
	require.Contains(t, err.Error(), "master key does not open this store")
	_, err = core.OpenKeyring(context.Background(), e.Store, other[:16])
	require.ErrorContains(t, err, "want 32")
}

func TestKeyRotationResumesAndRetires(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ctx := adminCtx(e)
	w := newWorkspace(t, e, "w")
	for i := 0; i < 50; i++ {
		_, err := e.Service.SetSecret(ctx, w.ID, "K"+strings.Repeat("X", i%5)+string(rune('A'+i%26))+string(rune('A'+i/26)), "v", false)
		require.NoError(t, err)
	}
	before, fpBefore, err := e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, w.ID)
	require.NoError(t, err)
	versions := map[string]int64{}
	secs, err := e.Store.ListSecrets(context.Background(), e.Org.Org.ID, w.ID)
	require.NoError(t, err)
	for _, s := range secs {
		versions[s.Key] = s.Version
	}
	keys0, err := core.ListKeys(context.Background(), e.Store)
	require.NoError(t, err)
	require.Len(t, keys0, 1)
	oldKey := keys0[0].ID

	kr, err := core.OpenKeyring(context.Background(), e.Store, e.MasterKey)
	require.NoError(t, err)
	// Interrupt the first rotation after one batch.
	cctx, cancel := context.WithCancel(context.Background())
	_, err = kr.RotateKeys(cctx, e.Store, core.RotateOptions{BatchSize: 10, Settle: time.Millisecond,
		Progress: func(done int64) { cancel() }})
	require.Error(t, err)
	keys1, err := core.ListKeys(context.Background(), e.Store)
	require.NoError(t, err)
	require.Len(t, keys1, 2)
	var half int64
	for _, k := range keys1 {
		if k.ID == oldKey {
			half = k.Secrets
		}
	}
	require.Greater(t, half, int64(0), "interrupted half-way")
	require.Less(t, half, int64(50))
	// Retiring the old key is refused while rows use it.
	require.ErrorContains(t, core.RetireKey(context.Background(), e.Store, oldKey), "still encrypts")

	// The next run resumes the same rotation: no third key.
	res, err := kr.RotateKeys(context.Background(), e.Store, core.RotateOptions{BatchSize: 10, Settle: time.Millisecond})
	require.NoError(t, err)
	require.True(t, res.Resumed)
	keys2, err := core.ListKeys(context.Background(), e.Store)
	require.NoError(t, err)
	require.Len(t, keys2, 2)
	for _, k := range keys2 {
		if k.ID == oldKey {
			require.Zero(t, k.Secrets)
			require.False(t, k.Current)
		}
	}
	after, fpAfter, err := e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, w.ID)
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Equal(t, fpBefore, fpAfter, "rotation changes no env: nothing restarts")
	secs, err = e.Store.ListSecrets(context.Background(), e.Org.Org.ID, w.ID)
	require.NoError(t, err)
	for _, s := range secs {
		require.Equal(t, versions[s.Key], s.Version, "rotation changes no version")
	}
	require.ErrorContains(t, core.RetireKey(context.Background(), e.Store, res.NewKeyID), "current")
	require.NoError(t, core.RetireKey(context.Background(), e.Store, oldKey))

	// A ciphertext under the retired key no longer decrypts.
	db := rawDB(t, e)
	_, err = db.Exec(`UPDATE secrets SET key_id = $1 WHERE key = (SELECT MIN(key) FROM secrets)`, oldKey)
	require.NoError(t, err)
	require.NoError(t, e.Service.Keyring().Reload(context.Background(), e.Store))
	_, _, err = e.Service.EffectiveEnv(context.Background(), e.Store, e.Org.Org.ID, w.ID)
	require.Error(t, err)
}

func TestSecretValidationWritesNothing(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, testenv.Options{Runtime: fastRuntime()})
	ctx := adminCtx(e)
	for _, key := range []string{"lower", "1ABC", "A-B", "ORGPLANE_X", "PATH", "HOME", "LD_PRELOAD", "LD_LIBRARY_PATH", strings.Repeat("A", 257), ""} {
		_, err := e.Service.SetSecret(ctx, "", key, "v", false)
		require.Equal(t, 400, core.AsError(err).Status, key)
	}
	_, err := e.Service.SetSecret(ctx, "", "BIG", strings.Repeat("x", core.MaxSecretValue+1), false)
	require.Equal(t, 400, core.AsError(err).Status)
	list, err := e.Store.ListSecrets(context.Background(), e.Org.Org.ID, "")
	require.NoError(t, err)
	require.Empty(t, list)
	_, err = e.Service.SetSecret(ctx, "", "OK_"+strings.Repeat("A", 253), strings.Repeat("x", core.MaxSecretValue), false)
	require.NoError(t, err)
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	// The platform box's provision and health are audited in the
	// background: the snapshot is taken once it is running (its agent
	// played here), so that only the dry run could change the log.
	e := newRulesEnv(t)
	ctx := adminCtx(e)
	w := newWorkspace(t, e, "w")
	auditBefore, err := e.Store.ListAudit(context.Background(), e.Org.Org.ID, store.AuditFilter{Limit: 1000})
	require.NoError(t, err)
	res, err := e.Service.SetSecret(ctx, w.ID, "DRY", "v", true)
	require.NoError(t, err)
	require.True(t, res.DryRun)
	require.EqualValues(t, 1, res.Version)
	_, err = e.Store.GetSecret(context.Background(), e.Org.Org.ID, w.ID, "DRY")
	require.ErrorIs(t, err, store.ErrNotFound)
	auditAfter, err := e.Store.ListAudit(context.Background(), e.Org.Org.ID, store.AuditFilter{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, auditAfter, len(auditBefore))
	jobs, err := e.Store.ListJobs(context.Background(), e.Org.Org.ID, "", 100)
	require.NoError(t, err)
	require.Empty(t, jobs)
	_, err = e.Service.DeleteSecret(ctx, w.ID, "DRY", true)
	require.Equal(t, 404, core.AsError(err).Status)
}
