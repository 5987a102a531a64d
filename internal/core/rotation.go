package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orgplane/orgplane/internal/auth"
	"github.com/orgplane/orgplane/internal/store"
)

// RotationResult says what a key rotation did.
type RotationResult struct {
	NewKeyID    string
	Resumed     bool
	Reencrypted int64
	Remaining   int64 // rows still under an older key (should be 0)
}

// RotateOptions tune a rotation.
type RotateOptions struct {
	BatchSize int // rows re-encrypted per transaction (default 500)
	// Settle is how long to keep sweeping for rows that servers running
	// with the previous ring wrote under the old key (default 20s: servers
	// reload their ring every 15s).
	Settle time.Duration
	// Progress, if set, is told after each batch how many rows this
	// rotation has re-encrypted so far.
	Progress func(done int64)
}

// RotateKeys makes a new data key current and re-encrypts every secret
// under it, in batches: online (servers keep serving), resumable (a crash
// leaves a marker and the next run finishes the same rotation) and
// idempotent (a row is re-encrypted only if it is still under an old key).
// It changes no secret's value or version and restarts nothing.
func (k *Keyring) RotateKeys(ctx context.Context, st store.Store, opts RotateOptions) (RotationResult, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.Settle <= 0 {
		opts.Settle = 20 * time.Second
	}
	var res RotationResult
	err := st.InTx(ctx, func(tx store.Store) error {
		target, err := tx.GetMeta(ctx, metaRotation)
		if err == nil && len(target) > 0 {
			keys, err := tx.ListDataKeys(ctx)
			if err != nil {
				return err
			}
			for _, dk := range keys {
				if dk.ID == string(target) && dk.Current {
					res.NewKeyID, res.Resumed = dk.ID, true
					return nil
				}
			}
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := addDataKey(ctx, tx, k.master, time.Now()); err != nil {
			return err
		}
		keys, err := tx.ListDataKeys(ctx)
		if err != nil {
			return err
		}
		for _, dk := range keys {
			if dk.Current {
				res.NewKeyID = dk.ID
			}
		}
		return tx.PutMeta(ctx, metaRotation, []byte(res.NewKeyID))
	})
	if err != nil {
		return res, fmt.Errorf("start rotation: %w", err)
	}
	if err := k.Reload(ctx, st); err != nil {
		return res, err
	}
	deadline := time.Now().Add(opts.Settle)
	for {
		sweepOpts := opts
		if opts.Progress != nil {
			// sweep counts its own rows; the caller is told the total.
			base := res.Reencrypted
			sweepOpts.Progress = func(done int64) { opts.Progress(base + done) }
		}
		n, remaining, err := k.sweep(ctx, st, res.NewKeyID, sweepOpts)
		res.Reencrypted += n
		if err != nil {
			return res, err
		}
		res.Remaining = remaining
		if remaining == 0 && time.Now().After(deadline) {
			break
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err := st.PutMeta(ctx, metaRotation, []byte{}); err != nil {
		return res, fmt.Errorf("finish rotation: %w", err)
	}
	return res, nil
}

// sweep re-encrypts every row under a key other than target, batch by
// batch, and reports how many rows remain under other keys.
func (k *Keyring) sweep(ctx context.Context, st store.Store, target string, opts RotateOptions) (int64, int64, error) {
	keys, err := st.ListDataKeys(ctx)
	if err != nil {
		return 0, 0, err
	}
	var done, remaining int64
	for _, dk := range keys {
		if dk.ID == target || !dk.RetiredAt.IsZero() {
			continue
		}
		var cursor store.SecretCursor
		for {
			batch, err := st.SecretsByKeyID(ctx, dk.ID, cursor, opts.BatchSize)
			if err != nil {
				return done, 0, err
			}
			if len(batch) == 0 {
				break
			}
			fresh := make([]store.Secret, len(batch))
			for i, sec := range batch {
				v, err := k.decrypt(ctx, st, sec)
				if err != nil {
					return done, 0, err
				}
				if fresh[i], err = k.encrypt(sec, v); err != nil {
					return done, 0, err
				}
			}
			// A row written meanwhile (another version) is left alone: it is
			// counted again by the next sweep if it still uses the old key.
			var n int
			err = st.InTx(ctx, func(tx store.Store) error {
				var err error
				n, err = tx.ReencryptSecrets(ctx, fresh, dk.ID)
				return err
			})
			done += int64(n)
			if err != nil {
				return done, 0, fmt.Errorf("re-encrypt batch: %w", err)
			}
			last := batch[len(batch)-1]
			cursor = store.SecretCursor{OrgID: last.OrgID, WorkspaceID: last.WorkspaceID, Key: last.Key}
			if opts.Progress != nil {
				opts.Progress(done)
			}
		}
		n, err := st.CountSecretsByKeyID(ctx, dk.ID)
		if err != nil {
			return done, 0, err
		}
		remaining += n
	}
	return done, remaining, nil
}

// KeyInfo describes one data key for `orgplane keys ls`.
type KeyInfo struct {
	store.DataKey
	Secrets int64
}

// ListKeys lists the data keys and how many secrets each encrypts.
func ListKeys(ctx context.Context, st store.Store) ([]KeyInfo, error) {
	keys, err := st.ListDataKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, len(keys))
	for i, dk := range keys {
		n, err := st.CountSecretsByKeyID(ctx, dk.ID)
		if err != nil {
			return nil, err
		}
		out[i] = KeyInfo{DataKey: dk, Secrets: n}
	}
	return out, nil
}

// RetireKey retires a data key: it then decrypts nothing. Refused for the
// current key and while any secret or open approval still uses it.
func RetireKey(ctx context.Context, st store.Store, id string) error {
	return st.InTx(ctx, func(tx store.Store) error {
		keys, err := tx.ListDataKeys(ctx)
		if err != nil {
			return err
		}
		var found *store.DataKey
		for i := range keys {
			if keys[i].ID == id {
				found = &keys[i]
			}
		}
		switch {
		case found == nil:
			return NotFound("data key", id)
		case found.Current:
			return Conflict("data key %s is current; rotate first (orgplane keys rotate)", id)
		case !found.RetiredAt.IsZero():
			return nil
		}
		n, err := tx.CountSecretsByKeyID(ctx, id)
		if err != nil {
			return err
		}
		if n > 0 {
			return Conflict("data key %s still encrypts %d secrets; finish the rotation first (orgplane keys rotate)", id, n)
		}
		// Approvals seal a value (or a minted credential) with the key of
		// their day and keep it until they end (7 days at most): retiring
		// that key would make them fail to execute.
		if n, err = tx.CountSealedByKeyID(ctx, id); err != nil {
			return err
		}
		if n > 0 {
			return Conflict("data key %s still seals the values of %d open approvals; retire it once they have ended (at most the policy's max TTL)", id, n)
		}
		if err := tx.RetireDataKey(ctx, id, time.Now()); err != nil {
			return err
		}
		return auditAllOrgs(ctx, tx, "keys.retire", id)
	})
}

// auditAllOrgs records an operator action on the shared key ring in every
// org's audit log: each org's secrets are concerned.
func auditAllOrgs(ctx context.Context, tx store.Store, action, keyID string) error {
	orgs, err := tx.ListOrgs(ctx)
	if err != nil {
		return err
	}
	for _, o := range orgs {
		if _, err := tx.AppendAudit(ctx, store.AuditEntry{OrgID: o.ID, At: time.Now().UTC(), PrincipalKind: auth.KindSystem,
			Action: action, TargetKind: "data_key", TargetID: keyID, Outcome: "ok", Detail: "{}"}); err != nil {
			return err
		}
	}
	return nil
}

// AuditRotation records a finished rotation in every org's audit log.
func AuditRotation(ctx context.Context, st store.Store, res RotationResult) error {
	return st.InTx(ctx, func(tx store.Store) error { return auditAllOrgs(ctx, tx, "keys.rotate", res.NewKeyID) })
}
