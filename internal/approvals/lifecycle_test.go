package approvals

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	t0      = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	expires = t0.Add(time.Hour)
	agent   = Party{Kind: "admin", TokenID: "t-mgmt", Workspace: "w-platform"}
	owner   = Party{Kind: "user", TokenID: "t-own", UserID: "u-own", Role: "owner"}
	admin   = Party{Kind: "user", TokenID: "t-adm", UserID: "u-adm", Role: "admin"}
	viewer  = Party{Kind: "user", TokenID: "t-view", UserID: "u-view", Role: "viewer"}
)

func TestTransitions(t *testing.T) {
	all := []string{Pending, Approved, Executing, Succeeded, Failed, Denied, Expired, Cancelled}
	allowed := map[[2]string]bool{
		{Pending, Approved}: true, {Pending, Denied}: true, {Pending, Expired}: true, {Pending, Cancelled}: true,
		{Approved, Executing}: true, {Executing, Succeeded}: true, {Executing, Failed}: true,
	}
	for _, from := range all {
		for _, to := range all {
			require.Equal(t, allowed[[2]string{from, to}], CanMove(from, to), "%s -> %s", from, to)
		}
	}
	for _, s := range []string{Succeeded, Failed, Denied, Expired, Cancelled} {
		require.True(t, Final(s, true), s)
		require.True(t, Final(s, false), s)
	}
	require.True(t, Final(Approved, false), "a free-form approval ends at approved")
	require.False(t, Final(Approved, true), "an action still has to run")
	require.False(t, Final(Pending, true))
	require.False(t, Final(Executing, true))

	reqAll := []string{Pending, Answered, Declined, Expired, Cancelled}
	for _, from := range reqAll {
		for _, to := range reqAll {
			want := from == Pending && to != Pending
			require.Equal(t, want, CanMoveRequest(from, to), "request %s -> %s", from, to)
		}
	}
}

func TestDecide(t *testing.T) {
	ownerVote := []Vote{{UserID: "u-own", Approve: true, At: t0}}
	for _, tc := range []struct {
		name      string
		state     string
		requester Party
		decider   Party
		votes     []Vote
		quorum    int
		now       time.Time
		approve   bool
		want      string
		err       error
	}{
		{name: "owner approves an agent's request", state: Pending, requester: agent, decider: owner, quorum: 1, now: t0, approve: true, want: Approved},
		{name: "admin person approves", state: Pending, requester: agent, decider: admin, quorum: 1, now: t0, approve: true, want: Approved},
		{name: "a deny is final at once", state: Pending, requester: agent, decider: owner, votes: nil, quorum: 2, now: t0, approve: false, want: Denied},
		{name: "a deny after approvals is final", state: Pending, requester: agent, decider: admin, votes: ownerVote, quorum: 3, now: t0, approve: false, want: Denied},
		{name: "quorum not met yet", state: Pending, requester: agent, decider: owner, quorum: 2, now: t0, approve: true, want: Pending},
		{name: "quorum met by a second person", state: Pending, requester: agent, decider: admin, votes: ownerVote, quorum: 2, now: t0, approve: true, want: Approved},
		{name: "the same person twice does not make a quorum", state: Pending, requester: agent, decider: owner, votes: ownerVote, quorum: 2, now: t0, approve: true, err: ErrAlreadyVoted},
		{name: "quorum 0 is read as 1", state: Pending, requester: agent, decider: owner, quorum: 0, now: t0, approve: true, want: Approved},
		{name: "the requester's own token", state: Pending, requester: agent, decider: Party{Kind: "user", TokenID: "t-mgmt", UserID: "u-x", Role: "owner"}, quorum: 1, now: t0, approve: true, err: ErrOwnRequest},
		{name: "a person deciding their own request", state: Pending, requester: owner, decider: Party{Kind: "user", TokenID: "t-other", UserID: "u-own", Role: "owner"}, quorum: 1, now: t0, approve: true, err: ErrOwnRequest},
		{name: "an agent never decides", state: Pending, requester: owner, decider: agent, quorum: 1, now: t0, approve: true, err: ErrNotPerson},
		{name: "another token of the requesting workspace", state: Pending, requester: Party{Kind: "workspace", TokenID: "t-box", Workspace: "w-1"},
			decider: Party{Kind: "workspace", TokenID: "t-minted", Workspace: "w-1"}, quorum: 1, now: t0, approve: true, err: ErrNotPerson},
		{name: "an admin token (automation) never decides", state: Pending, requester: agent, decider: Party{Kind: "admin", TokenID: "t-ci"}, quorum: 1, now: t0, approve: true, err: ErrNotPerson},
		{name: "a viewer never decides", state: Pending, requester: agent, decider: viewer, quorum: 1, now: t0, approve: true, err: ErrRoleViewer},
		{name: "not pending: approved", state: Approved, requester: agent, decider: owner, quorum: 1, now: t0, approve: true, err: ErrNotPending},
		{name: "not pending: denied", state: Denied, requester: agent, decider: owner, quorum: 1, now: t0, approve: true, err: ErrNotPending},
		{name: "not pending: cancelled", state: Cancelled, requester: agent, decider: owner, quorum: 1, now: t0, approve: false, err: ErrNotPending},
		{name: "not pending: expired", state: Expired, requester: agent, decider: owner, quorum: 1, now: t0, approve: true, err: ErrNotPending},
		{name: "past its expiry, before the sweeper", state: Pending, requester: agent, decider: owner, quorum: 1, now: expires, approve: true, err: ErrExpiredByTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decide(tc.state, tc.requester, tc.decider, tc.votes, tc.quorum, expires, tc.now, tc.approve)
			if tc.err != nil {
				require.True(t, errors.Is(err, tc.err), "got %v, want %v", err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, d.State)
			require.Equal(t, Vote{UserID: tc.decider.UserID, Approve: tc.approve, At: tc.now}, d.Vote)
		})
	}
}

func TestMayCancel(t *testing.T) {
	box := Party{Kind: "workspace", TokenID: "t-box", Workspace: "w-1"}
	require.True(t, MayCancel(box, box))
	require.True(t, MayCancel(box, Party{Kind: "workspace", TokenID: "t-box2", Workspace: "w-1"}), "the workspace's next box")
	require.False(t, MayCancel(box, Party{Kind: "workspace", TokenID: "t-2", Workspace: "w-2"}))
	require.False(t, MayCancel(box, owner), "people decide or deny; they do not cancel an agent's ask")
	require.True(t, MayCancel(owner, Party{Kind: "user", TokenID: "t-laptop", UserID: "u-own", Role: "owner"}))
}
