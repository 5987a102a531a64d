package crypto

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// maxKeyFileSize bounds what LoadMasterKeyFile reads: a key is 44 base64
// characters, so anything much larger is the wrong file.
const maxKeyFileSize = 4096

// ParseMasterKey decodes a master key from standard base64 (the form of
// ORGPLANE_MASTER_KEY). Surrounding whitespace is ignored because keys often
// arrive from files or shells with a trailing newline.
func ParseMasterKey(b64 string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		// The base64 error names a byte offset, never the input itself.
		return nil, fmt.Errorf("parse master key: not base64: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("parse master key: decodes to %d bytes, want %d", len(key), KeySize)
	}
	return key, nil
}

// EncodeMasterKey is the inverse of ParseMasterKey.
func EncodeMasterKey(key []byte) string {
	return base64.StdEncoding.EncodeToString(key)
}

// GenerateMasterKey returns a fresh random master key.
func GenerateMasterKey() ([]byte, error) {
	key, err := randomBytes(KeySize)
	if err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	return key, nil
}

// LoadMasterKeyFile reads a base64 master key from path. It refuses a file
// that group or others may access: a key anyone on the machine can read
// protects nothing, and failing loudly is better than running exposed.
func LoadMasterKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load master key file: %w", err)
	}
	defer f.Close()
	// Stat the open file rather than the path so the mode checked is the
	// mode of the file read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load master key file %s: not a regular file", path)
	}
	// Windows does not carry Unix permission bits; there the check would
	// refuse every file.
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("load master key file %s: mode %#o lets group or others access it; want 0600 or 0400 (chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load master key file %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("load master key file %s: larger than %d bytes", path, maxKeyFileSize)
	}
	key, err := ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("load master key file %s: %w", path, err)
	}
	return key, nil
}

// WriteMasterKeyFile writes key as base64 to a new file with mode 0600. It
// never overwrites: replacing an existing master key would make every
// secret in the store unreadable.
func WriteMasterKeyFile(path string, key []byte) (err error) {
	if len(key) != KeySize {
		return fmt.Errorf("write master key file %s: key is %d bytes, want %d", path, len(key), KeySize)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write master key file: %w", err)
	}
	defer func() {
		if err != nil {
			// A partial key file would be loaded next time as a wrong
			// key; better no file than a broken one.
			_ = os.Remove(path)
		}
	}()
	if _, err := f.WriteString(EncodeMasterKey(key) + "\n"); err != nil {
		_ = f.Close()
		return fmt.Errorf("write master key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write master key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write master key file %s: %w", path, err)
	}
	return nil
}
