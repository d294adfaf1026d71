package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Heartbeat (key 12), v0-v4: keeps a member's session alive and tells it
// when to rejoin (REBALANCE_IN_PROGRESS).

func (c *coordinator) heartbeat(req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := kmsg.NewPtrHeartbeatResponse()
	if !c.ready() {
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp
	}
	g := c.lockGroup(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	defer g.mu.Unlock()
	m, code := g.checkMember(req.MemberID, req.InstanceID)
	switch {
	case code != 0:
		resp.ErrorCode = code
	case req.Generation != g.generation:
		resp.ErrorCode = kerr.IllegalGeneration.Code
	case g.state == groupPreparingRebalance:
		m.lastSeen = time.Now()
		resp.ErrorCode = kerr.RebalanceInProgress.Code
	default:
		m.lastSeen = time.Now()
	}
	return resp
}
