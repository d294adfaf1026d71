package kafka

import (
	"fmt"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreatePartitions (key 37), v0-v3: grows a topic to Count partitions on
// the one broker; manual assignments may only name broker 0.

func (s *Server) createPartitions(req *kmsg.CreatePartitionsRequest) *kmsg.CreatePartitionsResponse {
	resp := kmsg.NewPtrCreatePartitionsResponse()
	seen := map[string]bool{}
	for _, t := range req.Topics {
		rt := kmsg.NewCreatePartitionsResponseTopic()
		rt.Topic = t.Topic
		fail := func(code int16, msg string) { rt.ErrorCode, rt.ErrorMessage = code, strp(msg) }
		have, exists := s.store.Topics()[t.Topic]
		switch {
		case seen[t.Topic]:
			fail(kerr.InvalidRequest.Code, "topic "+t.Topic+" is named twice")
		case log.ValidateTopic(t.Topic) != nil:
			fail(kerr.InvalidTopicException.Code, log.ValidateTopic(t.Topic).Error())
		case internalTopic(t.Topic):
			fail(kerr.InvalidTopicException.Code, t.Topic+" is the broker's own topic: it keeps one partition")
		case !exists:
			fail(kerr.UnknownTopicOrPartition.Code, "unknown topic "+t.Topic)
		case t.Count <= have || t.Count > MaxPartitions:
			fail(kerr.InvalidPartitions.Code, fmt.Sprintf("topic %s has %d partitions: ask for %d..%d", t.Topic, have, have+1, MaxPartitions))
		case t.Assignment != nil && !onlyBroker0(t.Assignment, int(t.Count-have)):
			fail(kerr.InvalidReplicaAssignment.Code, "assignments must give each new partition the one replica 0")
		case req.ValidateOnly:
		default:
			if err := s.store.AddPartitions(t.Topic, t.Count); err != nil {
				fail(errCode(err), err.Error())
			} else {
				s.logf("topic %s grown from %d to %d partitions", t.Topic, have, t.Count)
			}
		}
		seen[t.Topic] = true
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func onlyBroker0(as []kmsg.CreatePartitionsRequestTopicAssignment, added int) bool {
	if len(as) != added {
		return false
	}
	for _, a := range as {
		if len(a.Replicas) != 1 || a.Replicas[0] != 0 {
			return false
		}
	}
	return true
}
