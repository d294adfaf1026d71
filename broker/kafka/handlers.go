package kafka

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// clusterID is what Metadata reports; there is one broker, node 0.
const clusterID = "copyscope"

// errCode maps a log error to the Kafka error code a client understands.
func errCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, log.ErrUnknownTopicOrPartition):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, log.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, log.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, log.ErrCorruptMessage):
		return kerr.CorruptMessage.Code
	case errors.Is(err, log.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, log.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, log.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, log.ErrRecordTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, log.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code
	}
	return kerr.KafkaStorageError.Code
}

func strp(s string) *string { return &s }

// metadata describes the requested topics (creating unknown ones when
// allowed) and one broker: node 0 at the address the client connected to,
// so the client stays on the listener, and the transfer path, it chose.
func (s *Server) metadata(req *kmsg.MetadataRequest, local string) *kmsg.MetadataResponse {
	resp := kmsg.NewPtrMetadataResponse()
	host, portStr, _ := net.SplitHostPort(local)
	port, _ := strconv.Atoi(portStr)
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = 0, host, int32(port)
	resp.Brokers = []kmsg.MetadataResponseBroker{b}
	resp.ClusterID = strp(clusterID)
	resp.ControllerID = 0

	existing := s.store.Topics()
	var names []string
	if req.Topics == nil {
		for name := range existing {
			names = append(names, name)
		}
		slices.Sort(names)
	} else {
		for _, t := range req.Topics {
			if t.Topic == nil {
				// A topic id lookup: this broker has no topic ids.
				rt := kmsg.NewMetadataResponseTopic()
				rt.TopicID = t.TopicID
				rt.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, rt)
				continue
			}
			names = append(names, *t.Topic)
		}
	}
	autoCreate := s.cfg.AutoCreateTopics && (req.Version < 4 || req.AllowAutoTopicCreation)
	for _, name := range names {
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = strp(name)
		rt.IsInternal = internalTopic(name)
		if err := log.ValidateTopic(name); err != nil {
			rt.ErrorCode = kerr.InvalidTopicException.Code
			resp.Topics = append(resp.Topics, rt)
			continue
		}
		n, ok := existing[name]
		if !ok && autoCreate && !internalTopic(name) {
			err := s.store.CreateTopic(name, s.cfg.DefaultPartitions)
			switch {
			case err == nil:
				s.logf("created topic %s with %d partitions (auto-create)", name, s.cfg.DefaultPartitions)
				n, ok = s.cfg.DefaultPartitions, true
			case errors.Is(err, log.ErrTopicExists):
				n, ok = s.store.Topics()[name]
			default:
				s.logf("auto-create topic %s: %v", name, err)
				rt.ErrorCode = errCode(err)
				resp.Topics = append(resp.Topics, rt)
				continue
			}
		}
		if !ok {
			rt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Topics = append(resp.Topics, rt)
			continue
		}
		for p := int32(0); p < n; p++ {
			rp := kmsg.NewMetadataResponseTopicPartition()
			rp.Partition, rp.Leader, rp.LeaderEpoch = p, 0, 0
			rp.Replicas, rp.ISR = []int32{0}, []int32{0}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// produce appends each partition's record batches as sent; the log
// validates them (CRC, framing, idempotent sequence) and stores them
// verbatim. It returns the response and, for acks=0, the first failure.
func (s *Server) produce(req *kmsg.ProduceRequest) (*kmsg.ProduceResponse, error) {
	resp := kmsg.NewPtrProduceResponse()
	var failed error
	fail := func(rp *kmsg.ProduceResponseTopicPartition, code int16, err error) {
		rp.ErrorCode = code
		if err != nil {
			rp.ErrorMessage = strp(err.Error())
			if failed == nil {
				failed = err
			}
		}
	}
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		nameErr := log.ValidateTopic(t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = -1, -1, -1
			switch {
			case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
				fail(&rp, kerr.InvalidRequiredAcks.Code, fmt.Errorf("acks %d: use 0, 1 or -1", req.Acks))
			case req.TransactionID != nil:
				fail(&rp, kerr.TransactionalIDAuthorizationFailed.Code, errors.New("transactions are not supported by the copyscope broker"))
			case nameErr != nil:
				fail(&rp, kerr.InvalidTopicException.Code, nameErr)
			case internalTopic(t.Topic):
				fail(&rp, kerr.InvalidTopicException.Code, errors.New(t.Topic+" is the broker's own topic: commit offsets with OffsetCommit"))
			case len(p.Records) == 0:
				fail(&rp, kerr.CorruptMessage.Code, errors.New("empty record set"))
			default:
				part, err := s.store.Partition(t.Topic, p.Partition)
				if err != nil {
					fail(&rp, errCode(err), err)
					break
				}
				res, err := part.Append(p.Records)
				if err != nil {
					fail(&rp, errCode(err), err)
					break
				}
				rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = res.BaseOffset, res.LogAppendTime, part.StartOffset()
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, failed
}

// listOffsets answers earliest (-2), latest (-1) and by-timestamp queries.
func (s *Server) listOffsets(req *kmsg.ListOffsetsRequest) *kmsg.ListOffsetsResponse {
	resp := kmsg.NewPtrListOffsetsResponse()
	for _, t := range req.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		nameErr := log.ValidateTopic(t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition = p.Partition
			rp.Timestamp, rp.Offset, rp.LeaderEpoch = -1, -1, 0
			rt.Partitions = append(rt.Partitions, rp)
			rpp := &rt.Partitions[len(rt.Partitions)-1]
			if nameErr != nil {
				rpp.ErrorCode = kerr.InvalidTopicException.Code
				continue
			}
			part, err := s.store.Partition(t.Topic, p.Partition)
			if err != nil {
				rpp.ErrorCode = errCode(err)
				continue
			}
			switch ts := p.Timestamp; {
			case ts == -1:
				rpp.Offset = part.EndOffset()
			case ts == -2:
				rpp.Offset = part.StartOffset()
			case ts >= 0:
				off, at, err := part.OffsetForTime(ts)
				if err != nil {
					rpp.ErrorCode = errCode(err)
					continue
				}
				rpp.Offset, rpp.Timestamp = off, at
			default:
				rpp.ErrorCode = kerr.UnsupportedVersion.Code
			}
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// createTopics creates topics with one replica (there is one broker).
func (s *Server) createTopics(req *kmsg.CreateTopicsRequest) *kmsg.CreateTopicsResponse {
	resp := kmsg.NewPtrCreateTopicsResponse()
	for _, t := range req.Topics {
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic = t.Topic
		n := t.NumPartitions
		if n == -1 {
			n = s.cfg.DefaultPartitions
		}
		rt.NumPartitions, rt.ReplicationFactor = n, 1
		fail := func(code int16, msg string) {
			rt.ErrorCode, rt.ErrorMessage = code, strp(msg)
			rt.NumPartitions, rt.ReplicationFactor = -1, -1
		}
		switch {
		case log.ValidateTopic(t.Topic) != nil:
			fail(kerr.InvalidTopicException.Code, log.ValidateTopic(t.Topic).Error())
		case internalTopic(t.Topic):
			fail(kerr.InvalidTopicException.Code, t.Topic+" is the broker's own topic: it is created with the first offset commit")
		case n < 1 || n > MaxPartitions:
			fail(kerr.InvalidPartitions.Code, fmt.Sprintf("%d partitions: use 1..%d (or -1 for the broker default)", t.NumPartitions, MaxPartitions))
		case t.ReplicationFactor != -1 && t.ReplicationFactor != 1:
			fail(kerr.InvalidReplicationFactor.Code, fmt.Sprintf("replication factor %d: this broker is a single node, use 1", t.ReplicationFactor))
		case len(t.ReplicaAssignment) > 0:
			fail(kerr.InvalidReplicaAssignment.Code, "manual replica assignment is not supported: give a partition count")
		case req.ValidateOnly:
			if _, ok := s.store.Topics()[t.Topic]; ok {
				fail(kerr.TopicAlreadyExists.Code, "topic "+t.Topic+" already exists")
			}
		default:
			if err := s.store.CreateTopic(t.Topic, n); err != nil {
				fail(errCode(err), err.Error())
				s.logf("create topic %s: %v", t.Topic, err)
			} else {
				s.logf("created topic %s with %d partitions", t.Topic, n)
			}
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// deleteTopics deletes topics by name (topic ids are not supported).
func (s *Server) deleteTopics(req *kmsg.DeleteTopicsRequest) *kmsg.DeleteTopicsResponse {
	resp := kmsg.NewPtrDeleteTopicsResponse()
	names := req.TopicNames
	var byID [][16]byte
	for _, t := range req.Topics {
		if t.Topic != nil {
			names = append(names, *t.Topic)
		} else {
			byID = append(byID, t.TopicID)
		}
	}
	for _, name := range names {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		rt.Topic = strp(name)
		var err error
		if err = log.ValidateTopic(name); err != nil {
			rt.ErrorCode = kerr.InvalidTopicException.Code
		} else if internalTopic(name) {
			err = errors.New(name + " holds the committed offsets of every group: delete groups with DeleteGroups instead")
			rt.ErrorCode = kerr.InvalidTopicException.Code
		} else if err = s.store.DeleteTopic(name); err != nil {
			rt.ErrorCode = errCode(err)
		} else {
			s.logf("deleted topic %s", name)
		}
		if err != nil {
			rt.ErrorMessage = strp(err.Error())
		}
		resp.Topics = append(resp.Topics, rt)
	}
	for _, id := range byID {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		rt.TopicID = id
		rt.ErrorCode = kerr.UnknownTopicID.Code
		rt.ErrorMessage = strp("this broker has no topic ids: delete by name")
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// initProducerID hands an idempotent producer a fresh id, or bumps the
// epoch of the id it already has (KIP-360).
func (s *Server) initProducerID(req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := kmsg.NewPtrInitProducerIDResponse()
	if req.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp
	}
	if req.ProducerID >= 0 && req.ProducerEpoch >= 0 && req.ProducerEpoch < 32767 {
		resp.ProducerID, resp.ProducerEpoch = req.ProducerID, req.ProducerEpoch+1
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = s.nextPID.Add(1), 0
	return resp
}
