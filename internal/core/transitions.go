package core

// transitions is the box lifecycle: from -> the statuses it may move to.
// Every status write goes through checkTransition; an illegal one is
// refused, not written.
var transitions = map[string]map[string]bool{
	StatusStopped:      {StatusProvisioning: true, StatusPaused: true, StatusRemoved: true},
	StatusProvisioning: {StatusProvisioning: true, StatusRunning: true, StatusDegraded: true, StatusFailed: true, StatusStopped: true, StatusPaused: true, StatusRemoved: true},
	StatusRunning:      {StatusProvisioning: true, StatusDegraded: true, StatusFailed: true, StatusStopped: true, StatusPaused: true, StatusRemoved: true},
	StatusDegraded:     {StatusProvisioning: true, StatusRunning: true, StatusFailed: true, StatusStopped: true, StatusPaused: true, StatusRemoved: true},
	StatusFailed:       {StatusProvisioning: true, StatusStopped: true, StatusPaused: true, StatusRemoved: true},
	StatusPaused:       {StatusProvisioning: true, StatusStopped: true, StatusRemoved: true},
	StatusRemoved:      {},
}

// CanTransition reports whether a workspace may move from one status to
// another.
func CanTransition(from, to string) bool {
	return transitions[from][to]
}

func checkTransition(id, from, to string) error {
	if !CanTransition(from, to) {
		return Conflict("workspace %s cannot go from %s to %s", id, from, to)
	}
	return nil
}

// hasBox reports whether a status means a box should be running.
func hasBox(status string) bool {
	return status == StatusProvisioning || status == StatusRunning || status == StatusDegraded
}
