package kafka

import (
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups (key 15), v0-v5: state, protocol and members (with their
// metadata and assignments). An unknown group is "Dead", as Kafka answers
// before v6.

func (c *coordinator) describeGroups(req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := kmsg.NewPtrDescribeGroupsResponse()
	for _, id := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group, rg.State = id, groupDead.String()
		switch {
		case !c.ready():
			rg.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		case id == "":
			rg.ErrorCode = kerr.InvalidGroupID.Code
		default:
			if g := c.lockGroup(id, false); g != nil {
				describeGroup(g, &rg)
				g.mu.Unlock()
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// describeGroup fills rg from g (with g.mu held).
func describeGroup(g *group, rg *kmsg.DescribeGroupsResponseGroup) {
	rg.State, rg.ProtocolType, rg.Protocol = g.state.String(), g.protocolType, g.protocol
	for _, m := range g.members {
		rm := kmsg.NewDescribeGroupsResponseGroupMember()
		rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
		rm.ProtocolMetadata, rm.MemberAssignment = m.metadata(g.protocol), m.assignment
		rg.Members = append(rg.Members, rm)
	}
	slices.SortFunc(rg.Members, func(a, b kmsg.DescribeGroupsResponseGroupMember) int { return strings.Compare(a.MemberID, b.MemberID) })
}
