package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/store"
)

// Meta names.
const (
	metaCheckValue = "master_key_check"
	metaRotation   = "key_rotation_target"
)

// Keyring holds the master key's derivatives: the ring of data keys that
// encrypt secret values and the key that fingerprints environments.
type Keyring struct {
	master []byte
	fpKey  []byte

	mu   sync.RWMutex
	ring *crypto.Ring
}

// OpenKeyring checks the master key against the store and loads the data
// keys. On a fresh store it records the check value and makes the first
// data key. A master key that does not open the store is refused: there is
// no plaintext fallback.
func OpenKeyring(ctx context.Context, st store.Store, master []byte) (*Keyring, error) {
	if len(master) != crypto.KeySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(master), crypto.KeySize)
	}
	err := st.InTx(ctx, func(tx store.Store) error {
		cv, err := tx.GetMeta(ctx, metaCheckValue)
		if errors.Is(err, store.ErrNotFound) {
			if cv, err = crypto.NewCheckValue(master); err != nil {
				return err
			}
			if err := tx.PutMeta(ctx, metaCheckValue, cv); err != nil {
				return err
			}
			return addDataKey(ctx, tx, master, time.Now())
		}
		if err != nil {
			return err
		}
		if err := crypto.VerifyCheckValue(master, cv); err != nil {
			return fmt.Errorf("the master key does not open this store (wrong key for this database): %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k := &Keyring{master: master, fpKey: crypto.FingerprintKey(master)}
	if err := k.Reload(ctx, st); err != nil {
		return nil, err
	}
	return k, nil
}

func addDataKey(ctx context.Context, tx store.Store, master []byte, now time.Time) error {
	id, key, err := crypto.GenerateDataKey()
	if err != nil {
		return err
	}
	wrapped, err := crypto.WrapKey(master, id, key)
	if err != nil {
		return err
	}
	return tx.InsertDataKey(ctx, store.DataKey{ID: id, Wrapped: wrapped, Current: true, CreatedAt: now.UTC()})
}

// Reload reads the data keys again (another replica or an operator may
// have rotated them). Retired keys are left out: they decrypt nothing.
func (k *Keyring) Reload(ctx context.Context, st store.Store) error {
	keys, err := st.ListDataKeys(ctx)
	if err != nil {
		return fmt.Errorf("load data keys: %w", err)
	}
	plain := map[string][]byte{}
	current := ""
	for _, dk := range keys {
		if !dk.RetiredAt.IsZero() {
			continue
		}
		b, err := crypto.UnwrapKey(k.master, dk.ID, dk.Wrapped)
		if err != nil {
			return fmt.Errorf("unwrap data key %s: %w", dk.ID, err)
		}
		plain[dk.ID] = b
		if dk.Current {
			current = dk.ID
		}
	}
	if current == "" {
		return errors.New("load data keys: no current data key")
	}
	ring, err := crypto.NewRing(current, plain)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.ring = ring
	k.mu.Unlock()
	return nil
}

func (k *Keyring) get() *crypto.Ring {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ring
}

// ValueMAC is the keyed hash of one (key, value) pair. Effective-env
// fingerprints are computed over these, so they can be compared and
// recomputed without decrypting anything.
func (k *Keyring) ValueMAC(key, value string) string {
	return crypto.Fingerprint(k.fpKey, map[string]string{key: value})
}

// Fingerprint is the env fingerprint of an effective set given as
// key -> value MAC.
func (k *Keyring) Fingerprint(macs map[string]string) string {
	return crypto.Fingerprint(k.fpKey, macs)
}

func (k *Keyring) encrypt(s store.Secret, value string) (store.Secret, error) {
	keyID, ct, err := k.get().Encrypt([]byte(value), crypto.AAD(s.OrgID, s.Scope(), s.WorkspaceID, s.Key))
	if err != nil {
		return s, fmt.Errorf("encrypt secret %s: %w", s.Key, err)
	}
	s.KeyID, s.Ciphertext = keyID, ct
	return s, nil
}

func (k *Keyring) decrypt(ctx context.Context, st store.Store, s store.Secret) (string, error) {
	aad := crypto.AAD(s.OrgID, s.Scope(), s.WorkspaceID, s.Key)
	b, err := k.get().Decrypt(s.KeyID, s.Ciphertext, aad)
	if errors.Is(err, crypto.ErrUnknownKey) {
		// Perhaps rotated by another replica since we loaded the ring.
		if rerr := k.Reload(ctx, st); rerr == nil {
			b, err = k.get().Decrypt(s.KeyID, s.Ciphertext, aad)
		}
	}
	if err != nil {
		return "", fmt.Errorf("decrypt secret %s (%s scope): %w", s.Key, s.Scope(), err)
	}
	return string(b), nil
}

// Seal encrypts value for the secret row s (its org, scope, workspace and
// key are the associated data) and sets its key id, ciphertext and value
// MAC. The service seals through it; bulk loaders (benchmarks, imports) may
// too.
func (k *Keyring) Seal(s store.Secret, value string) (store.Secret, error) {
	s, err := k.encrypt(s, value)
	if err != nil {
		return s, err
	}
	s.ValueMAC = k.ValueMAC(s.Key, value)
	return s, nil
}

// sealFor encrypts value for one object that is not a secret row (an
// approval's secret value, a credential made for its requester): what and
// id bind the ciphertext to that object, so it opens nowhere else.
func (k *Keyring) sealFor(orgID, what, id, value string) (string, []byte, error) {
	keyID, ct, err := k.get().Encrypt([]byte(value), crypto.AAD(orgID, what, id, ""))
	if err != nil {
		return "", nil, fmt.Errorf("seal %s %s: %w", what, id, err)
	}
	return keyID, ct, nil
}

// openFor decrypts what sealFor sealed for the same object.
func (k *Keyring) openFor(ctx context.Context, st store.Store, orgID, what, id, keyID string, ct []byte) (string, error) {
	aad := crypto.AAD(orgID, what, id, "")
	b, err := k.get().Decrypt(keyID, ct, aad)
	if errors.Is(err, crypto.ErrUnknownKey) {
		if rerr := k.Reload(ctx, st); rerr == nil {
			b, err = k.get().Decrypt(keyID, ct, aad)
		}
	}
	if err != nil {
		return "", fmt.Errorf("open %s %s: %w", what, id, err)
	}
	return string(b), nil
}
