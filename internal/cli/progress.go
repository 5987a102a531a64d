package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/term"
)

// isTerminal reports whether w is a terminal (then progress is one line
// rewritten in place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressLine shows a changing status: on a terminal one line rewritten
// in place, elsewhere one plain line per change (the same text twice in a
// row is written once), so that a log or a pipe reads as a history.
type progressLine struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	last string
	open bool // a line is on the terminal without its newline
}

func newProgressLine(w io.Writer) *progressLine {
	return &progressLine{w: w, tty: isTerminal(w)}
}

// set shows s as the current status.
func (p *progressLine) set(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s == p.last {
		return
	}
	p.last = s
	if p.tty {
		// Carriage return and erase-line: the status replaces the last.
		fmt.Fprintf(p.w, "\r\x1b[K%s", s)
		p.open = true
		return
	}
	fmt.Fprintln(p.w, s)
}

// done ends the status with s, on a line of its own.
func (p *progressLine) done(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s\n", s)
		p.open = false
		p.last = s
		return
	}
	if s != p.last {
		fmt.Fprintln(p.w, s)
	}
	p.last = s
}

// end finishes a line left open on a terminal (an interrupt, an error),
// so that what follows starts on a line of its own.
func (p *progressLine) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// jsonLine writes v as one line of compact JSON (--json progress: one
// object per line, each complete on its own).
func jsonLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
