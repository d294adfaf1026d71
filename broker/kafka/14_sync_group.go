package kafka

import (
	"bytes"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SyncGroup (key 14), v0-v5. The leader hands over every member's
// assignment; followers wait for it. v5 echoes the protocol type and name
// and checks them when the client sends them.

func (c *coordinator) syncGroup(req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	if !c.ready() {
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp
	}
	g := c.lockGroup(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	resp.ProtocolType, resp.Protocol = strp(g.protocolType), strp(g.protocol)
	ans, ch := g.sync(req, time.Now())
	g.mu.Unlock()
	if ch != nil {
		var ok bool
		if ans, ok = wait(c, ch); !ok {
			ans = syncAnswer{code: kerr.CoordinatorNotAvailable.Code}
		}
	}
	resp.ErrorCode, resp.MemberAssignment = ans.code, ans.assignment
	return resp
}

// sync applies a SyncGroup (with g.mu held): an answer now, or the channel
// a follower's answer arrives on.
func (g *group) sync(req *kmsg.SyncGroupRequest, now time.Time) (syncAnswer, chan syncAnswer) {
	m, code := g.checkMember(req.MemberID, req.InstanceID)
	switch {
	case code != 0:
		return syncAnswer{code: code}, nil
	case req.Generation != g.generation:
		return syncAnswer{code: kerr.IllegalGeneration.Code}, nil
	case req.ProtocolType != nil && *req.ProtocolType != g.protocolType,
		req.Protocol != nil && *req.Protocol != g.protocol:
		return syncAnswer{code: kerr.InconsistentGroupProtocol.Code}, nil
	}
	m.lastSeen = now
	switch g.state {
	case groupPreparingRebalance:
		return syncAnswer{code: kerr.RebalanceInProgress.Code}, nil
	case groupStable:
		return syncAnswer{assignment: m.assignment}, nil
	case groupCompletingRebalance:
	default:
		return syncAnswer{code: kerr.UnknownMemberID.Code}, nil
	}
	if m.id != g.leader {
		if m.sync != nil {
			m.sync <- syncAnswer{code: kerr.RebalanceInProgress.Code}
		}
		m.sync = make(chan syncAnswer, 1)
		return syncAnswer{}, m.sync
	}
	for _, a := range req.GroupAssignment {
		if o := g.members[a.MemberID]; o != nil && len(a.MemberAssignment) <= maxMemberMetadata {
			o.assignment = bytes.Clone(a.MemberAssignment)
		}
	}
	g.state = groupStable
	for _, o := range g.members {
		if o.sync != nil {
			o.sync <- syncAnswer{assignment: o.assignment}
			o.sync = nil
		}
	}
	return syncAnswer{assignment: m.assignment}, nil
}
