package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/copyscope/copyscope/broker/log"
)

// OffsetCommit (key 8), v0-v8. A commit is appended to the offsets log
// (durable per the store's fsync policy) before it is acknowledged and
// applied. Generation -1 with no member id is a "simple" commit, allowed
// while the group has no members (admin tools, partition consumers); v0
// has no generation and is always one. Retention times (v2-v4) are
// accepted and ignored, as Kafka 2.1+ does.

func (c *coordinator) offsetCommit(req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := kmsg.NewPtrOffsetCommitResponse()
	code := int16(0)
	switch {
	case !c.ready():
		code = kerr.CoordinatorLoadInProgress.Code
	case req.Group == "":
		code = kerr.InvalidGroupID.Code
	}
	simple := req.Version == 0 || (req.Generation < 0 && req.MemberID == "")
	var g *group
	if code == 0 {
		if g = c.lockGroup(req.Group, simple); g == nil {
			code = kerr.IllegalGeneration.Code // the group is gone: so is its generation
		} else {
			defer g.mu.Unlock()
			defer c.forget(g)
			code = g.checkCommit(req, simple)
		}
	}
	var recs []offsetRecord
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			if code == 0 {
				rp.ErrorCode = c.checkCommitted(t.Topic, p)
			}
			if rp.ErrorCode == 0 {
				md := ""
				if p.Metadata != nil {
					md = *p.Metadata
				}
				recs = append(recs, offsetRecord{tp: topicPartition{t.Topic, p.Partition}, c: committed{offset: p.Offset, leaderEpoch: p.LeaderEpoch, metadata: md}})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(recs) == 0 {
		return resp
	}
	if err := c.appendOffsets(g.id, recs); err != nil {
		c.logf("group %s: %v; answered COORDINATOR_NOT_AVAILABLE", g.id, err)
		setCommitCodes(resp, kerr.CoordinatorNotAvailable.Code)
		return resp
	}
	for _, r := range recs {
		g.offsets[r.tp] = r.c
	}
	return resp
}

// checkCommit applies Kafka's rules for who may commit (with g.mu held).
func (g *group) checkCommit(req *kmsg.OffsetCommitRequest, simple bool) int16 {
	if simple && len(g.members) == 0 {
		return 0
	}
	if g.state == groupCompletingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	m, code := g.checkMember(req.MemberID, req.InstanceID)
	if code != 0 {
		return code
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	m.lastSeen = time.Now() // a commit proves the member alive, as a heartbeat does
	return 0
}

// checkCommitted checks one partition's commit.
func (c *coordinator) checkCommitted(topic string, p kmsg.OffsetCommitRequestTopicPartition) int16 {
	if p.Metadata != nil && len(*p.Metadata) > maxCommitMetadata {
		return kerr.OffsetMetadataTooLarge.Code
	}
	if log.ValidateTopic(topic) != nil {
		return kerr.InvalidTopicException.Code
	}
	if _, err := c.store.Partition(topic, p.Partition); err != nil {
		return kerr.UnknownTopicOrPartition.Code
	}
	return 0
}

func setCommitCodes(resp *kmsg.OffsetCommitResponse, code int16) {
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if resp.Topics[i].Partitions[j].ErrorCode == 0 {
				resp.Topics[i].Partitions[j].ErrorCode = code
			}
		}
	}
}
