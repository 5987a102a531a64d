package core

import (
	"fmt"
	"regexp"
	"strings"
)

var secretKeyRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// reserved env names: orgplane's own, and those that change how a box's
// programs are found or loaded.
var reservedKeys = map[string]bool{"PATH": true, "HOME": true, "LD_PRELOAD": true, "LD_LIBRARY_PATH": true}

// MaxSecretValue is the largest secret value accepted, in bytes.
const MaxSecretValue = 64 << 10

// ValidateSecretKey checks an env var name for a secret (or a spec env).
func ValidateSecretKey(key string) error {
	switch {
	case len(key) > 256:
		return Invalid("invalid_key", "key is %d characters; at most 256", len(key))
	case !secretKeyRE.MatchString(key):
		return Invalid("invalid_key", "key %q is not an env var name (^[A-Z_][A-Z0-9_]*$)", truncate(key, 64))
	case strings.HasPrefix(key, "ORGPLANE_"):
		return Invalid("reserved_key", "key %q is reserved: the ORGPLANE_ prefix belongs to orgplane", key)
	case reservedKeys[key]:
		return Invalid("reserved_key", "key %q is reserved", key)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s...", s[:n])
}
