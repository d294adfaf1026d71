package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LeaveGroup (key 13), v0-v5: v0-v2 name one member; v3+ a batch of
// members by member id and/or group.instance.id (KIP-345), each with its
// own error.

func (c *coordinator) leaveGroup(req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := kmsg.NewPtrLeaveGroupResponse()
	if !c.ready() {
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp
	}
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	g := c.lockGroup(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	defer g.mu.Unlock()
	left := 0
	for _, l := range leaving {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = l.MemberID, l.InstanceID
		id := l.MemberID
		if id == "" && l.InstanceID != nil {
			id = g.static[*l.InstanceID]
		}
		m, code := g.checkMember(id, l.InstanceID)
		if code == 0 {
			g.remove(m, kerr.UnknownMemberID.Code)
			left++
		}
		rm.ErrorCode = code
		resp.Members = append(resp.Members, rm)
	}
	if req.Version < 3 {
		resp.ErrorCode, resp.Members = resp.Members[0].ErrorCode, nil
	}
	if left > 0 {
		g.rebalance(time.Now())
	}
	c.forget(g)
	return resp
}
