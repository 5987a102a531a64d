// Package crypto encrypts secrets at rest.
//
// A master key (32 bytes, supplied by the operator) never encrypts secret
// values itself: it wraps data keys, which the store persists wrapped, and
// it derives the key that fingerprints effective environments. Secret values
// are encrypted with AES-256-GCM by a Ring of data keys, so keys can be
// rotated without re-encrypting everything at once: every ciphertext records
// the id of the key that sealed it, and associated data (AAD) binds it to its
// row so a ciphertext copied to another row does not decrypt.
//
// Errors from this package never contain plaintext or key bytes, because they
// travel into logs and API responses.
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeySize is the size in bytes of master keys and data keys (AES-256).
const KeySize = 32

// NonceSize is the size of the random GCM nonce prepended to every ciphertext.
const NonceSize = 12

var (
	// ErrUnknownKey means a ciphertext names a data key the ring does not
	// hold (never existed, or retired).
	ErrUnknownKey = errors.New("unknown data key")
	// ErrDecrypt means authentication failed: the ciphertext was tampered
	// with, belongs to another row, or was sealed by another key.
	ErrDecrypt = errors.New("message authentication failed")
	// ErrWrongMasterKey means the master key is not the one this store was
	// created with; the server must refuse to start.
	ErrWrongMasterKey = errors.New("master key does not open this store")
)

// Domain-separation labels: the master key seals both wrapped data keys and
// the check value, so each kind of message gets its own associated data and
// one can never be passed off as the other.
const (
	wrapLabel  = "orgplane key wrap v1"
	checkLabel = "orgplane check value v1"
	aadLabel   = "orgplane secret aad v1"
)

// checkPlaintext is what a check value seals; its content only has to be
// fixed and known, the security comes from GCM authentication.
var checkPlaintext = []byte("orgplane master key check value")

// GenerateDataKey returns a fresh random data key and a random short id for
// it. The store may also choose its own ids (k1, k2, ...); ids are not secret.
func GenerateDataKey() (id string, key []byte, err error) {
	key, err = randomBytes(KeySize)
	if err != nil {
		return "", nil, fmt.Errorf("generate data key: %w", err)
	}
	raw, err := randomBytes(6)
	if err != nil {
		return "", nil, fmt.Errorf("generate data key id: %w", err)
	}
	return "k" + hex.EncodeToString(raw), key, nil
}

// WrapKey encrypts a data key with the master key so the store can persist
// it. The key id is authenticated, so a wrapped key cannot be re-labelled.
func WrapKey(master []byte, id string, dataKey []byte) ([]byte, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("wrap data key %q: key is %d bytes, want %d", id, len(dataKey), KeySize)
	}
	aead, err := newGCM(master)
	if err != nil {
		return nil, fmt.Errorf("wrap data key %q: %w", id, err)
	}
	out, err := seal(aead, dataKey, wrapAAD(id))
	if err != nil {
		return nil, fmt.Errorf("wrap data key %q: %w", id, err)
	}
	return out, nil
}

// UnwrapKey reverses WrapKey. A wrong master key or a wrong id gives an
// error wrapping ErrDecrypt.
func UnwrapKey(master []byte, id string, wrapped []byte) ([]byte, error) {
	aead, err := newGCM(master)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %q: %w", id, err)
	}
	key, err := open(aead, wrapped, wrapAAD(id))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %q: %w", id, err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("unwrap data key %q: key is %d bytes, want %d", id, len(key), KeySize)
	}
	return key, nil
}

// NewCheckValue seals a known value with the master key. The store keeps it
// so that a server started with another master key fails fast at startup
// instead of failing on the first secret it reads.
func NewCheckValue(master []byte) ([]byte, error) {
	aead, err := newGCM(master)
	if err != nil {
		return nil, fmt.Errorf("create check value: %w", err)
	}
	out, err := seal(aead, checkPlaintext, []byte(checkLabel))
	if err != nil {
		return nil, fmt.Errorf("create check value: %w", err)
	}
	return out, nil
}

// VerifyCheckValue reports whether master opens the check value cv; if not,
// the error wraps ErrWrongMasterKey.
func VerifyCheckValue(master, cv []byte) error {
	aead, err := newGCM(master)
	if err != nil {
		return fmt.Errorf("verify check value: %w", err)
	}
	got, err := open(aead, cv, []byte(checkLabel))
	if err != nil || string(got) != string(checkPlaintext) {
		return fmt.Errorf("verify check value: %w", ErrWrongMasterKey)
	}
	return nil
}

// Ring holds unwrapped data keys by id and the id of the key new ciphertexts
// are sealed with. A Ring is immutable, hence safe for concurrent use;
// rotation builds a new Ring.
type Ring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewRing builds a ring from unwrapped data keys. current must be one of
// them. The key bytes are not retained beyond the AES key schedules.
func NewRing(current string, keys map[string][]byte) (*Ring, error) {
	if _, ok := keys[current]; !ok {
		return nil, fmt.Errorf("create key ring: current key %q: %w", current, ErrUnknownKey)
	}
	r := &Ring{current: current, aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, key := range keys {
		if id == "" {
			return nil, errors.New("create key ring: empty key id")
		}
		aead, err := newGCM(key)
		if err != nil {
			return nil, fmt.Errorf("create key ring: key %q: %w", id, err)
		}
		r.aeads[id] = aead
	}
	return r, nil
}

// Current is the id of the key Encrypt uses.
func (r *Ring) Current() string { return r.current }

// Has reports whether the ring can decrypt ciphertexts sealed by key id.
func (r *Ring) Has(id string) bool {
	_, ok := r.aeads[id]
	return ok
}

// Encrypt seals plaintext with the current key. The ciphertext is the random
// 12-byte nonce followed by the GCM output; aad (see AAD) must be given
// again to Decrypt. Random nonces are safe here: a data key would need on the
// order of 2^32 encryptions before nonce collisions became a concern, and
// rotation retires keys long before that.
func (r *Ring) Encrypt(plaintext, aad []byte) (keyID string, ciphertext []byte, err error) {
	aead := r.aeads[r.current]
	ciphertext, err = seal(aead, plaintext, aad)
	if err != nil {
		return "", nil, fmt.Errorf("encrypt secret with key %q: %w", r.current, err)
	}
	return r.current, ciphertext, nil
}

// Decrypt opens a ciphertext made by Encrypt. An id the ring does not hold
// gives ErrUnknownKey; any authentication failure (tampering, another row's
// aad, another key) gives ErrDecrypt.
func (r *Ring) Decrypt(keyID string, ciphertext, aad []byte) ([]byte, error) {
	aead, ok := r.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("decrypt secret with key %q: %w", keyID, ErrUnknownKey)
	}
	plaintext, err := open(aead, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("decrypt secret with key %q: %w", keyID, err)
	}
	return plaintext, nil
}

// AAD binds a secret's ciphertext to its row. Each field is length-prefixed
// (8-byte big-endian) after a version tag, so no two different rows encode
// alike ("ab"+"c" differs from "a"+"bc") and a future format cannot be
// confused with this one.
func AAD(orgID, scope, workspaceID, key string) []byte {
	n := len(aadLabel) + len(orgID) + len(scope) + len(workspaceID) + len(key) + 5*8
	b := make([]byte, 0, n)
	for _, f := range []string{aadLabel, orgID, scope, workspaceID, key} {
		b = appendField(b, f)
	}
	return b
}

func wrapAAD(id string) []byte {
	return appendField(appendField(nil, wrapLabel), id)
}

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		// Only the length is reported: the bytes themselves must never
		// reach an error message.
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create gcm: %w", err)
	}
	return aead, nil
}

func seal(aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, NonceSize, NonceSize+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("read nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, aad), nil
}

func open(aead cipher.AEAD, ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < NonceSize+aead.Overhead() {
		return nil, ErrDecrypt
	}
	plaintext, err := aead.Open(nil, ciphertext[:NonceSize], ciphertext[NonceSize:], aad)
	if err != nil {
		// GCM's own error says nothing useful; the sentinel lets callers
		// tell tampering from a missing key.
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("read random bytes: %w", err)
	}
	return b, nil
}
