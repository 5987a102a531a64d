//go:build unix

package cli

import "golang.org/x/sys/unix"

// ownFD gives the prompt's reader a descriptor of its own for the terminal.
// The reader can outlive the command (an interrupted prompt leaves it
// blocked until a line arrives); with the caller's descriptor it could
// later read from, and restore the settings of, whatever file reused that
// number once the caller closed it.
func ownFD(fd int) (int, func(), error) {
	d, err := unix.Dup(fd)
	if err != nil {
		return 0, nil, err
	}
	unix.CloseOnExec(d)
	return d, func() { _ = unix.Close(d) }, nil
}
