package kafka

import (
	"bytes"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// JoinGroup (key 11), v0-v9. v4+ answers a member without an id with
// MEMBER_ID_REQUIRED and the id to rejoin with (KIP-394); v5+ carries
// group.instance.id (static membership, KIP-345); v9's SkipAssignment is
// never set.

func (c *coordinator) joinGroup(req *kmsg.JoinGroupRequest, clientID, host string) *kmsg.JoinGroupResponse {
	fail := func(code int16) *kmsg.JoinGroupResponse {
		r := kmsg.NewPtrJoinGroupResponse()
		r.ErrorCode, r.Generation, r.MemberID = code, -1, req.MemberID
		return r
	}
	if !c.ready() {
		return fail(kerr.CoordinatorLoadInProgress.Code)
	}
	if code := c.checkJoin(req, clientID); code != 0 {
		return fail(code)
	}
	g := c.lockGroup(req.Group, true)
	r, ch := c.join(g, req, clientID, host, time.Now())
	c.forget(g)
	g.mu.Unlock()
	if r != nil {
		return r
	}
	if r, ok := wait(c, ch); ok {
		return r
	}
	return fail(kerr.CoordinatorNotAvailable.Code)
}

// checkJoin rejects what no group state can accept.
func (c *coordinator) checkJoin(req *kmsg.JoinGroupRequest, clientID string) int16 {
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	size := 0
	for _, p := range req.Protocols {
		size += len(p.Name) + len(p.Metadata)
	}
	switch {
	case req.Group == "":
		return kerr.InvalidGroupID.Code
	case session < minSessionTimeout || session > maxSessionTimeout:
		return kerr.InvalidSessionTimeout.Code
	case req.ProtocolType == "" || len(req.Protocols) == 0:
		return kerr.InconsistentGroupProtocol.Code
	case size > maxMemberMetadata:
		c.logf("group %s: client %s sent %d bytes of member metadata (limit %d); refused with INVALID_REQUEST", req.Group, clientID, size, maxMemberMetadata)
		return kerr.InvalidRequest.Code
	}
	return 0
}

// join applies a valid JoinGroup to g (with g.mu held): it returns either
// an immediate answer or the channel the answer will arrive on.
func (c *coordinator) join(g *group, req *kmsg.JoinGroupRequest, clientID, host string, now time.Time) (*kmsg.JoinGroupResponse, chan *kmsg.JoinGroupResponse) {
	fail := func(code int16) (*kmsg.JoinGroupResponse, chan *kmsg.JoinGroupResponse) {
		r := kmsg.NewPtrJoinGroupResponse()
		r.ErrorCode, r.Generation, r.MemberID = code, -1, req.MemberID
		return r, nil
	}
	if others := len(g.members) - btoi(g.members[req.MemberID] != nil); others > 0 &&
		(req.ProtocolType != g.protocolType || !sharesProtocol(g.candidatesExcept(req.MemberID), req.Protocols)) {
		return fail(kerr.InconsistentGroupProtocol.Code) // the other members speak none of its protocols
	}
	m, replaced, code := c.joiningMember(g, req, clientID, now)
	if code != 0 || m == nil {
		r, _ := fail(code)
		if code == kerr.MemberIDRequired.Code {
			r.MemberID = m.id
		}
		return r, nil
	}
	_, known := g.members[m.id]
	// A static member's new incarnation with the same subscription takes
	// over its assignment without a rebalance (KIP-345), unless it leads.
	changed := !(known || replaced) || !sameProtocols(m.protocols, req.Protocols)
	m.clientID, m.clientHost = clientID, host
	m.protocols = cloneProtocols(req.Protocols)
	m.session = time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	m.rebalance = m.session
	if req.Version >= 1 && req.RebalanceTimeoutMillis > 0 {
		m.rebalance = min(time.Duration(req.RebalanceTimeoutMillis)*time.Millisecond, maxRebalanceTimeout)
	}
	m.lastSeen = now
	g.members[m.id] = m
	if m.instanceID != nil {
		g.static[*m.instanceID] = m.id
	}
	g.protocolType = req.ProtocolType
	if g.state == groupStable && !changed && m.id != g.leader {
		return g.joinResponse(m), nil // nothing new: the current generation stands
	}
	if g.state != groupPreparingRebalance {
		g.rebalance(now)
	}
	if m.join != nil {
		old := kmsg.NewPtrJoinGroupResponse()
		old.ErrorCode, old.Generation, old.MemberID = kerr.RebalanceInProgress.Code, -1, m.id
		m.join <- old
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joined, m.join = true, ch
	if g.allJoined() {
		g.completeJoin(now)
	}
	return nil, ch
}

// joiningMember finds or makes the member a JoinGroup is for; replaced
// says it is a static member's new incarnation. For a v4+ member without
// an id it returns the id to rejoin with and MEMBER_ID_REQUIRED.
func (c *coordinator) joiningMember(g *group, req *kmsg.JoinGroupRequest, clientID string, now time.Time) (m *member, replaced bool, code int16) {
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	full := len(g.members)+len(g.pending) >= maxGroupMembers
	switch {
	case req.MemberID == "" && req.InstanceID != nil:
		m := &member{id: newMemberID(clientID), instanceID: strp(*req.InstanceID)}
		if oldID, ok := g.static[*req.InstanceID]; ok {
			// The instance restarted: the new member takes over and the
			// old id is fenced.
			if old := g.members[oldID]; old != nil {
				m.assignment, m.protocols = old.assignment, old.protocols
				g.remove(old, kerr.FencedInstanceID.Code)
				if g.leader == oldID {
					g.leader = m.id
				}
				replaced = true
			}
		} else if full {
			return nil, false, kerr.GroupMaxSizeReached.Code
		}
		return m, replaced, 0
	case req.MemberID == "":
		if full {
			return nil, false, kerr.GroupMaxSizeReached.Code
		}
		id := newMemberID(clientID)
		if req.Version >= 4 {
			g.pending[id] = now.Add(session)
			return &member{id: id}, false, kerr.MemberIDRequired.Code
		}
		return &member{id: id}, false, 0
	}
	m, code = g.checkMember(req.MemberID, req.InstanceID)
	if code == kerr.UnknownMemberID.Code {
		if _, ok := g.pending[req.MemberID]; ok {
			delete(g.pending, req.MemberID)
			m, code = &member{id: req.MemberID}, 0
			if req.InstanceID != nil {
				m.instanceID = strp(*req.InstanceID)
			}
		}
	}
	return m, false, code
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sharesProtocol(cands []string, ps []kmsg.JoinGroupRequestProtocol) bool {
	for _, p := range ps {
		if slices.Contains(cands, p.Name) {
			return true
		}
	}
	return false
}

func sameProtocols(a, b []kmsg.JoinGroupRequestProtocol) bool {
	return slices.EqualFunc(a, b, func(x, y kmsg.JoinGroupRequestProtocol) bool {
		return x.Name == y.Name && bytes.Equal(x.Metadata, y.Metadata)
	})
}

// cloneProtocols copies the request's metadata out of the connection's
// request buffer, which the next request overwrites.
func cloneProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(ps))
	for i, p := range ps {
		out[i] = kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: bytes.Clone(p.Metadata)}
	}
	return out
}
