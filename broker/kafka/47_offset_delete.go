package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetDelete (key 47), v0: deletes committed offsets of a group, except
// for topics its live consumers subscribe to (GROUP_SUBSCRIBED_TO_TOPIC).

func (c *coordinator) offsetDelete(req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := kmsg.NewPtrOffsetDeleteResponse()
	switch {
	case !c.ready():
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp
	case req.Group == "":
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	g := c.lockGroup(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	defer g.mu.Unlock()
	subscribed := g.subscribedTopics()
	var recs []offsetRecord
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			tp := topicPartition{t.Topic, p.Partition}
			switch _, ok := g.offsets[tp]; {
			case subscribed[t.Topic]:
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			case ok:
				recs = append(recs, offsetRecord{tp: tp, del: true})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(recs) > 0 {
		if err := c.appendOffsets(g.id, recs); err != nil {
			c.logf("group %s: delete offsets: %v; answered COORDINATOR_NOT_AVAILABLE", g.id, err)
			resp.ErrorCode, resp.Topics = kerr.CoordinatorNotAvailable.Code, nil
			return resp
		}
		for _, r := range recs {
			delete(g.offsets, r.tp)
		}
	}
	c.forget(g)
	return resp
}

// subscribedTopics are the topics the members of a consumer group
// subscribe to, from their protocol metadata (with g.mu held). A group of
// another protocol type subscribes to nothing here.
func (g *group) subscribedTopics() map[string]bool {
	out := map[string]bool{}
	if g.protocolType != "consumer" {
		return out
	}
	for _, m := range g.members {
		var md kmsg.ConsumerMemberMetadata
		if md.ReadFrom(m.metadata(g.protocol)) != nil {
			continue
		}
		for _, t := range md.Topics {
			out[t] = true
		}
	}
	return out
}
