// Package approvals holds the rules of approvals and requests: their
// lifecycles and who may decide what. It is pure (no store, no clock of its
// own): the service layer loads an approval, asks these rules, and writes
// the outcome with a compare-and-set on the state it read.
//
// Approval: pending → approved → executing → succeeded | failed, or
// pending → denied | expired | cancelled; a free-form approval (no action)
// ends at approved. Request: pending → answered | declined | expired |
// cancelled. Every end state is final.
package approvals

import (
	"errors"
	"fmt"
	"time"
)

// Approval states.
const (
	Pending   = "pending"
	Approved  = "approved"
	Executing = "executing"
	Succeeded = "succeeded"
	Failed    = "failed"
	Denied    = "denied"
	Expired   = "expired"
	Cancelled = "cancelled"
)

// Request states (Pending, Expired and Cancelled are shared).
const (
	Answered = "answered"
	Declined = "declined"
)

var approvalMoves = map[string]map[string]bool{
	Pending:   {Approved: true, Denied: true, Expired: true, Cancelled: true},
	Approved:  {Executing: true},
	Executing: {Succeeded: true, Failed: true},
}

var requestMoves = map[string]map[string]bool{
	Pending: {Answered: true, Declined: true, Expired: true, Cancelled: true},
}

// CanMove reports whether an approval may go from one state to another.
func CanMove(from, to string) bool { return approvalMoves[from][to] }

// CanMoveRequest reports whether a request may go from one state to another.
func CanMoveRequest(from, to string) bool { return requestMoves[from][to] }

// Final reports whether an approval in state s is done: nothing moves it
// again. A free-form approval (no action) is done once approved.
func Final(s string, hasAction bool) bool {
	if s == Approved {
		return !hasAction
	}
	return len(approvalMoves[s]) == 0
}

// Party is who asks or decides, as the credential says.
type Party struct {
	Kind string // "user", "admin", "workspace"
	// TokenID is the credential; UserID and Role the person behind a user
	// principal; Workspace the caller's (acting) workspace of an agent.
	TokenID   string
	UserID    string
	Role      string
	Workspace string
}

// Vote is one person's decision.
type Vote struct {
	UserID  string
	Approve bool
	At      time.Time
}

// Errors the rules answer with; the service layer maps them to API errors.
var (
	ErrNotPerson     = errors.New("only people decide approvals: agents and automation ask")
	ErrRoleViewer    = errors.New("a viewer cannot decide: owners and admins do")
	ErrOwnRequest    = errors.New("the requester cannot decide their own approval")
	ErrNotPending    = errors.New("the approval is no longer pending")
	ErrAlreadyVoted  = errors.New("this person has already approved it")
	ErrExpiredByTime = errors.New("the approval expired")
)

// sameRequester reports whether the decider is the requester, or speaks
// for the requester: the same token, the same person, or an agent of the
// same workspace (another token of it cannot approve for it).
func sameRequester(requester, decider Party) bool {
	switch {
	case requester.TokenID != "" && requester.TokenID == decider.TokenID:
		return true
	case requester.UserID != "" && requester.UserID == decider.UserID:
		return true
	case requester.Workspace != "" && requester.Workspace == decider.Workspace:
		return true
	}
	return false
}

// MayDecide is who may decide an approval or answer a request: a person
// (a user principal) whose role is owner or admin, and not its requester.
func MayDecide(requester, decider Party) error {
	switch {
	case decider.Kind != "user":
		return ErrNotPerson
	case decider.Role != "owner" && decider.Role != "admin":
		return ErrRoleViewer
	case sameRequester(requester, decider):
		return ErrOwnRequest
	}
	return nil
}

// Decision is what one decision does to a pending approval: the state it
// moves to (Pending while the quorum is not met) and the vote to record.
type Decision struct {
	State string
	Vote  Vote
}

// Decide applies one person's approve or deny to an approval in state
// state with the votes so far, under quorum, at now (an approval past its
// expiry is expired, whatever the sweeper has written yet). One deny is
// final; quorum distinct people must approve.
func Decide(state string, requester, decider Party, votes []Vote, quorum int, expiresAt, now time.Time, approve bool) (Decision, error) {
	if err := MayDecide(requester, decider); err != nil {
		return Decision{}, err
	}
	switch {
	case state != Pending:
		return Decision{}, fmt.Errorf("%w (it is %s)", ErrNotPending, state)
	case !now.Before(expiresAt):
		return Decision{}, ErrExpiredByTime
	}
	v := Vote{UserID: decider.UserID, Approve: approve, At: now}
	if !approve {
		return Decision{State: Denied, Vote: v}, nil
	}
	yes := 1
	for _, x := range votes {
		if x.UserID == decider.UserID {
			return Decision{}, ErrAlreadyVoted
		}
		if x.Approve {
			yes++
		}
	}
	if yes >= max(quorum, 1) {
		return Decision{State: Approved, Vote: v}, nil
	}
	return Decision{State: Pending, Vote: v}, nil
}

// MayCancel reports whether a party may cancel an approval or request: only
// its requester (the same token, or an agent of the same workspace, or the
// same person).
func MayCancel(requester, p Party) bool { return sameRequester(requester, p) }
