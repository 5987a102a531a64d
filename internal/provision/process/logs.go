package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/orgplane/orgplane/internal/redact"
)

// capLoop keeps every log file in LogDir under the cap, so a chatty box
// cannot fill the disk between two reads of its logs.
func (p *Provisioner) capLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.LogCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-p.closing:
			return
		case <-t.C:
		}
		paths, err := filepath.Glob(filepath.Join(p.cfg.LogDir, "*.log"))
		if err != nil {
			p.log.Warn("list box logs", "err", err)
			continue
		}
		p.logMu.Lock()
		for _, path := range paths {
			if err := p.capFile(path); err != nil {
				p.log.Warn("cap box log", "path", path, "err", err)
			}
		}
		p.logMu.Unlock()
	}
}

// capFile keeps a log under LogMaxBytes: when it is over, its last
// LogMaxBytes (from a line start) go to path.1 and the file is truncated to
// zero. The box keeps writing with O_APPEND, so its next write lands at the
// new end; only what it writes between the read and the truncate is lost,
// which beats renaming (the box would keep writing to the renamed file).
// The caller holds logMu.
func (p *Provisioner) capFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat log: %w", err)
	}
	size, limit := fi.Size(), p.cfg.LogMaxBytes
	if size <= limit {
		return nil
	}
	tail := make([]byte, limit)
	n, err := f.ReadAt(tail, size-limit)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read log tail: %w", err)
	}
	tail = tail[:n]
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("truncate log: %w", err)
	}
	// Drop the partial first line the cut landed in.
	if i := bytes.IndexByte(tail, '\n'); i >= 0 && i+1 < len(tail) {
		tail = tail[i+1:]
	}
	tmp := path + ".1.tmp"
	if err := os.WriteFile(tmp, tail, 0o600); err != nil {
		return fmt.Errorf("write rotated log: %w", err)
	}
	if err := os.Rename(tmp, path+".1"); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	return nil
}

// Logs returns the last tail lines of the workspace's output (all kept
// output when tail <= 0), across the rotated and the current file, with
// every value its latest boxes were started with masked (secrets, tokens;
// see remember). A workspace that never ran has no output: nil, nil.
func (p *Provisioner) Logs(ctx context.Context, workspaceID string, tail int) ([]byte, error) {
	if err := checkWorkspaceID(workspaceID); err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	path := p.LogPath(workspaceID)
	p.logMu.Lock()
	defer p.logMu.Unlock()
	if err := p.capFile(path); err != nil {
		p.log.Warn("cap box log", "workspace", workspaceID, "err", err)
	}
	var out []byte
	for _, name := range []string{path + ".1", path} {
		data, err := os.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read logs of %s: %w", workspaceID, err)
		}
		if len(out) > 0 && out[len(out)-1] != '\n' && len(data) > 0 {
			out = append(out, '\n')
		}
		out = append(out, data...)
	}
	if out == nil {
		return nil, nil
	}
	// Masked whole before the tail is cut, so no value is split by the cut.
	return lastLines([]byte(redact.Strings(string(out), p.masked(workspaceID))), tail), nil
}

// lastLines returns the last n lines of b (all of b when n <= 0). A final
// line without a newline counts as a line.
func lastLines(b []byte, n int) []byte {
	if n <= 0 {
		return b
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end-- // the final newline ends the last line, it does not start one
	}
	i, seen := end, 0
	for ; i > 0; i-- {
		if b[i-1] == '\n' {
			seen++
			if seen == n {
				break
			}
		}
	}
	return b[i:]
}
