//go:build linux

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/orgplane/orgplane/internal/client"
)

// openPTY opens a pseudo-terminal: the test types on master, the command
// reads slave as its stdin.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var n uint32
	var ioErr error
	// Control, not Fd: Fd would make the master blocking and break deadlines.
	require.NoError(t, controlFD(m, func(fd int) {
		if ioErr = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); ioErr == nil {
			n, ioErr = unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		}
	}))
	require.NoError(t, ioErr)
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return m, s
}

func controlFD(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}

func echoOn(t *testing.T, tty *os.File) bool {
	t.Helper()
	var tio *unix.Termios
	var ioErr error
	require.NoError(t, controlFD(tty, func(fd int) { tio, ioErr = unix.IoctlGetTermios(fd, unix.TCGETS) }))
	require.NoError(t, ioErr)
	return tio.Lflag&unix.ECHO != 0
}

// waitEchoOff waits for the command's prompt to turn echo off; if the
// command ends first, it fails at once and says how it ended.
func waitEchoOff(t *testing.T, tty *os.File, done <-chan int, stderr *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for echoOn(t, tty) {
		select {
		case code := <-done:
			t.Fatalf("the command ended (code %d) before prompting: %q", code, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the prompt did not turn echo off within 30s; stderr so far: %q", stderr.String())
		}
	}
}

// lockedBuffer is written by the command while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// drainTTY reads what the terminal sent back (its echo) until it is quiet.
func drainTTY(t *testing.T, master *os.File) string {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for {
		require.NoError(t, master.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
		n, err := master.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Logf("read master: %v", err)
			}
			return got.String()
		}
	}
}

func TestSecretsSetPromptsWithoutEcho(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.handle("PUT /v1/secrets/{key}", 200, client.SecretWrite{Key: "API_KEY", Scope: "global", Version: 1})
	master, slave := openPTY(t)
	require.True(t, echoOn(t, slave))

	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(context.Background(), []string{"--server", f.srv.URL, "--token", testToken, "secrets", "set", "API_KEY"}, slave, &out, &errb)
	}()
	waitEchoOff(t, slave, done, &errb)
	_, err := master.Write([]byte(plantedSecret + "\n"))
	require.NoError(t, err)

	select {
	case code := <-done:
		require.Equal(t, 0, code, errb.String())
	case <-time.After(10 * time.Second):
		t.Fatal("secrets set did not finish")
	}
	var body client.SetSecret
	require.NoError(t, json.Unmarshal(f.only().Body, &body))
	require.Equal(t, plantedSecret, body.Value)
	require.Equal(t, "Value for API_KEY (not shown): \n", errb.String())
	require.Equal(t, "set API_KEY (global, version 1)\n", out.String())
	require.True(t, echoOn(t, slave), "echo is back after the prompt")
	require.NotContains(t, drainTTY(t, master), "pl4nted", "the terminal did not echo the value")
}

func TestSecretsSetPromptInterruptedRestoresEcho(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	master, slave := openPTY(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"--server", f.srv.URL, "--token", testToken, "secrets", "set", "API_KEY"}, slave, &out, &errb)
	}()
	waitEchoOff(t, slave, done, &errb)
	cancel()
	select {
	case code := <-done:
		require.Equal(t, 1, code)
	case <-time.After(10 * time.Second):
		t.Fatal("secrets set did not stop when interrupted")
	}
	require.Contains(t, errb.String(), "error: context canceled")
	require.True(t, echoOn(t, slave), "echo is back after an interrupt")
	require.Empty(t, f.requests())
	// Let the abandoned terminal read return, as the process exit would.
	_, err := master.Write([]byte("\n"))
	require.NoError(t, err)
}
