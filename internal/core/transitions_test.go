package core

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTransitions(t *testing.T) {
	t.Parallel()
	all := []string{StatusProvisioning, StatusRunning, StatusDegraded, StatusFailed, StatusStopped, StatusPaused, StatusRemoved}
	allowed := map[[2]string]bool{}
	for _, p := range [][2]string{
		{StatusStopped, StatusProvisioning}, {StatusStopped, StatusPaused}, {StatusStopped, StatusRemoved},
		{StatusProvisioning, StatusProvisioning}, {StatusProvisioning, StatusRunning}, {StatusProvisioning, StatusFailed},
		{StatusProvisioning, StatusDegraded}, // a late platform box: kept, not failed
		{StatusProvisioning, StatusStopped}, {StatusProvisioning, StatusPaused}, {StatusProvisioning, StatusRemoved},
		{StatusRunning, StatusProvisioning}, {StatusRunning, StatusDegraded}, {StatusRunning, StatusFailed},
		{StatusRunning, StatusStopped}, {StatusRunning, StatusPaused}, {StatusRunning, StatusRemoved},
		{StatusDegraded, StatusProvisioning}, {StatusDegraded, StatusRunning}, {StatusDegraded, StatusFailed},
		{StatusDegraded, StatusStopped}, {StatusDegraded, StatusPaused}, {StatusDegraded, StatusRemoved},
		{StatusFailed, StatusProvisioning}, {StatusFailed, StatusStopped}, {StatusFailed, StatusPaused}, {StatusFailed, StatusRemoved},
		{StatusPaused, StatusProvisioning}, {StatusPaused, StatusStopped}, {StatusPaused, StatusRemoved},
	} {
		allowed[p] = true
	}
	for _, from := range all {
		for _, to := range all {
			t.Run(from+"->"+to, func(t *testing.T) {
				require.Equal(t, allowed[[2]string{from, to}], CanTransition(from, to))
				if !allowed[[2]string{from, to}] {
					require.Error(t, checkTransition("w", from, to))
				}
			})
		}
	}
	require.False(t, CanTransition("bogus", StatusRunning))
	require.False(t, CanTransition(StatusRunning, "bogus"))
}
