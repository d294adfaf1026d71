package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups (key 42), v0-v2: a group without members is deleted with
// its committed offsets (tombstones in the offsets log); one with members
// answers NON_EMPTY_GROUP.

func (c *coordinator) deleteGroups(req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	for _, id := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = id
		switch {
		case !c.ready():
			rg.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		case id == "":
			rg.ErrorCode = kerr.InvalidGroupID.Code
		default:
			rg.ErrorCode = c.deleteGroup(id)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (c *coordinator) deleteGroup(id string) int16 {
	g := c.lockGroup(id, false)
	if g == nil {
		return kerr.GroupIDNotFound.Code
	}
	defer g.mu.Unlock()
	if len(g.members) > 0 || len(g.pending) > 0 {
		return kerr.NonEmptyGroup.Code
	}
	var recs []offsetRecord
	for tp := range g.offsets {
		recs = append(recs, offsetRecord{tp: tp, del: true})
	}
	if len(recs) > 0 {
		if err := c.appendOffsets(id, recs); err != nil {
			c.logf("delete group %s: %v; answered COORDINATOR_NOT_AVAILABLE", id, err)
			return kerr.CoordinatorNotAvailable.Code
		}
	}
	clear(g.offsets)
	g.state = groupEmpty
	c.forget(g)
	c.logf("deleted group %s and its %d committed offsets", id, len(recs))
	return 0
}
