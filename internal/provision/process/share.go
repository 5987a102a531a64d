package process

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// shareProgram makes a program that box users cannot reach (the reference
// agent of a `go run`, built under a 0700 temp dir, or a binary in /root)
// runnable by them: a copy in BOX-DIR/bin, root-owned and 0755, named by
// its content so that versions never overwrite each other.
func shareProgram(boxDir, prog string) (string, error) {
	src, err := os.Open(prog)
	if err != nil {
		return "", err
	}
	defer src.Close()
	h := sha256.New()
	if _, err := io.Copy(h, src); err != nil {
		return "", err
	}
	bin := filepath.Join(boxDir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(bin, filepath.Base(prog)+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == 0o755 {
		return dst, nil // this very content, copied by an earlier start
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(bin, ".copy-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install %s: %w", dst, err)
	}
	return dst, nil
}

// ProgramPath is where boxes run prog from: prog itself, or the copy New
// made of it when box users could not reach it (see Config.Programs).
func (p *Provisioner) ProgramPath(prog string) string {
	if shared, ok := p.shared[prog]; ok {
		return shared
	}
	return prog
}
