package crypto

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// fingerprintInfo is the HKDF info for the fingerprint key; changing it
// changes every fingerprint, which marks every box stale.
const fingerprintInfo = "orgplane env fingerprint v1"

// FingerprintKey derives the HMAC key for Fingerprint from the master key.
// A separate derived key keeps fingerprints (which are shown and compared
// freely) from being usable against the encryption keys, and makes them
// unguessable for anyone without the master key, so a fingerprint does not
// let an observer test guesses of a secret value.
func FingerprintKey(master []byte) []byte {
	key, err := hkdf.Key(sha256.New, master, nil, fingerprintInfo, sha256.Size)
	if err != nil {
		// hkdf.Key fails only for output lengths beyond 255 hash blocks.
		panic(fmt.Sprintf("derive fingerprint key: %v", err))
	}
	return key
}

// Fingerprint is the keyed hash (hex HMAC-SHA256) of an effective env. It
// does not depend on map order, and every key and value is length-prefixed
// so that {"A": "bc"} and {"AB": "c"} differ. An empty or nil env has a
// fingerprint too (the HMAC of a zero count).
func Fingerprint(fpKey []byte, env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	// One buffer, one Write: cheaper than a Write per field, and the
	// encoding is easy to read off the code.
	n := 8
	for _, k := range keys {
		n += 16 + len(k) + len(env[k])
	}
	msg := make([]byte, 0, n)
	// The count comes first so that a prefix of one env cannot be read as
	// a whole other env.
	msg = binary.BigEndian.AppendUint64(msg, uint64(len(keys)))
	for _, k := range keys {
		msg = appendField(msg, k)
		msg = appendField(msg, env[k])
	}
	mac := hmac.New(sha256.New, fpKey)
	mac.Write(msg)
	return hex.EncodeToString(mac.Sum(nil))
}

// csrfInfo is the HKDF info for the key of canvas sessions' CSRF tokens.
const csrfInfo = "orgplane session csrf v1"

// CSRFKey derives the HMAC key of canvas sessions' CSRF tokens from the
// master key: a token is then computable by the server alone, for any
// session, without storing it.
func CSRFKey(master []byte) []byte {
	key, err := hkdf.Key(sha256.New, master, nil, csrfInfo, sha256.Size)
	if err != nil {
		panic(fmt.Sprintf("derive csrf key: %v", err))
	}
	return key
}
