package kafka

import (
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch (key 9), v0-v8. v2+ with no topics asks for every committed
// offset of the group; v8 asks for several groups at once. A partition
// without a commit answers offset -1 and no error, as Kafka does.
// RequireStable (v7+) needs no wait: there are no transactions.

// fetched is one topic's answer before it takes either response shape.
type fetched struct {
	topic string
	parts []kmsg.OffsetFetchResponseTopicPartition
}

func (c *coordinator) offsetFetch(req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := kmsg.NewPtrOffsetFetchResponse()
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			var ask []kmsg.OffsetFetchRequestTopic
			for _, t := range rg.Topics {
				ask = append(ask, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: t.Partitions})
			}
			if rg.Topics == nil {
				ask = nil
			}
			topics, code := c.fetchOffsets(rg.Group, ask)
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group, g.ErrorCode = rg.Group, code
			for _, f := range topics {
				gt := kmsg.NewOffsetFetchResponseGroupTopic()
				gt.Topic = f.topic
				for _, p := range f.parts {
					gt.Partitions = append(gt.Partitions, kmsg.OffsetFetchResponseGroupTopicPartition{
						Partition: p.Partition, Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, ErrorCode: p.ErrorCode})
				}
				g.Topics = append(g.Topics, gt)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return resp
	}
	topics, code := c.fetchOffsets(req.Group, req.Topics)
	resp.ErrorCode = code
	for _, f := range topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic, rt.Partitions = f.topic, f.parts
		if req.Version < 2 { // no top-level error: each partition carries it
			for i := range rt.Partitions {
				if rt.Partitions[i].ErrorCode == 0 {
					rt.Partitions[i].ErrorCode = code
				}
			}
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// fetchOffsets answers one group's question; ask nil means every commit.
func (c *coordinator) fetchOffsets(groupID string, ask []kmsg.OffsetFetchRequestTopic) ([]fetched, int16) {
	code := int16(0)
	switch {
	case !c.ready():
		code = kerr.CoordinatorLoadInProgress.Code
	case groupID == "":
		code = kerr.InvalidGroupID.Code
	}
	var offsets map[topicPartition]committed
	if code == 0 {
		if g := c.lockGroup(groupID, false); g != nil {
			offsets = maps.Clone(g.offsets)
			g.mu.Unlock()
		}
	}
	if ask == nil {
		byTopic := map[string][]int32{}
		for tp := range offsets {
			byTopic[tp.topic] = append(byTopic[tp.topic], tp.partition)
		}
		for t, ps := range byTopic {
			slices.Sort(ps)
			ask = append(ask, kmsg.OffsetFetchRequestTopic{Topic: t, Partitions: ps})
		}
		slices.SortFunc(ask, func(a, b kmsg.OffsetFetchRequestTopic) int { return strings.Compare(a.Topic, b.Topic) })
	}
	var out []fetched
	for _, t := range ask {
		f := fetched{topic: t.Topic}
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = p, -1, -1, strp("")
			if cm, ok := offsets[topicPartition{t.Topic, p}]; ok {
				rp.Offset, rp.LeaderEpoch, rp.Metadata = cm.offset, cm.leaderEpoch, strp(cm.metadata)
			}
			f.parts = append(f.parts, rp)
		}
		out = append(out, f)
	}
	return out, code
}
