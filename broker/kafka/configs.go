package kafka

import (
	"math"
	"strconv"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// configEntry is one config the broker really has, named as Kafka names
// it, with the flag that sets it (none can change at run time: the log's
// configuration is fixed when the store opens).
type configEntry struct {
	name string
	val  string
	typ  kmsg.ConfigType
	flag string // the `copyscope broker` flag, or "" when fixed
	doc  string
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// topicConfigs are the per-topic configs; every topic has the store's.
// __consumer_offsets says "compact" as Kafka's does: it is replayed whole
// at start, so only the newest commit of each partition matters.
func (s *Server) topicConfigs(topic string) []configEntry {
	lc := s.store.Config()
	retMs := int64(-1)
	if lc.RetentionAge > 0 {
		retMs = lc.RetentionAge.Milliseconds()
	}
	cleanup, tsType := "delete", "CreateTime"
	if internalTopic(topic) {
		cleanup = "compact"
	}
	if lc.LogAppendTime {
		tsType = "LogAppendTime"
	}
	flushMsgs, flushMs := int64(math.MaxInt64), int64(math.MaxInt64)
	switch lc.Fsync {
	case log.FsyncAlways:
		flushMsgs, flushMs = 1, 0
	case log.FsyncInterval:
		flushMs = lc.FsyncInterval.Milliseconds()
	}
	return []configEntry{
		{"cleanup.policy", cleanup, kmsg.ConfigTypeList, "", "delete: retention removes whole old segments"},
		{"compression.type", "producer", kmsg.ConfigTypeString, "", "batches are stored as the producer compressed them"},
		{"flush.messages", itoa(flushMsgs), kmsg.ConfigTypeLong, "--fsync", "1 with --fsync always"},
		{"flush.ms", itoa(flushMs), kmsg.ConfigTypeLong, "--fsync", "the fsync interval"},
		{"index.interval.bytes", itoa(lc.IndexIntervalBytes), kmsg.ConfigTypeInt, "", "bytes between sparse index entries"},
		{"max.message.bytes", itoa(min(lc.SegmentBytes, int64(s.cfg.MaxRequestBytes))), kmsg.ConfigTypeInt, "--segment-bytes, --max-request-bytes", "largest batch: one segment, and one request"},
		{"message.timestamp.type", tsType, kmsg.ConfigTypeString, "--log-append-time", ""},
		{"min.insync.replicas", "1", kmsg.ConfigTypeInt, "", "one broker, one replica"},
		{"retention.bytes", itoa(lc.RetentionBytes), kmsg.ConfigTypeLong, "--retention-bytes", "per partition; -1 unlimited"},
		{"retention.ms", itoa(retMs), kmsg.ConfigTypeLong, "--retention-ms", "-1 forever"},
		{"segment.bytes", itoa(lc.SegmentBytes), kmsg.ConfigTypeInt, "--segment-bytes", ""},
	}
}

// brokerConfigs are node 0's configs.
func (s *Server) brokerConfigs() []configEntry {
	lc := s.store.Config()
	retMs := int64(-1)
	if lc.RetentionAge > 0 {
		retMs = lc.RetentionAge.Milliseconds()
	}
	ms := func(d time.Duration) string { return itoa(d.Milliseconds()) }
	return []configEntry{
		{"auto.create.topics.enable", strconv.FormatBool(s.cfg.AutoCreateTopics), kmsg.ConfigTypeBoolean, "--auto-create-topics", ""},
		{"broker.id", "0", kmsg.ConfigTypeInt, "", "a single broker"},
		{"default.replication.factor", "1", kmsg.ConfigTypeInt, "", ""},
		{"group.max.session.timeout.ms", ms(maxSessionTimeout), kmsg.ConfigTypeInt, "", ""},
		{"group.max.size", itoa(maxGroupMembers), kmsg.ConfigTypeInt, "", ""},
		{"group.min.session.timeout.ms", ms(minSessionTimeout), kmsg.ConfigTypeInt, "", ""},
		{"log.dirs", s.store.Dir(), kmsg.ConfigTypeString, "--data", ""},
		{"log.retention.bytes", itoa(lc.RetentionBytes), kmsg.ConfigTypeLong, "--retention-bytes", ""},
		{"log.retention.ms", itoa(retMs), kmsg.ConfigTypeLong, "--retention-ms", ""},
		{"log.segment.bytes", itoa(lc.SegmentBytes), kmsg.ConfigTypeInt, "--segment-bytes", ""},
		{"num.partitions", itoa(int64(s.cfg.DefaultPartitions)), kmsg.ConfigTypeInt, "--partitions", ""},
		{"offset.metadata.max.bytes", itoa(maxCommitMetadata), kmsg.ConfigTypeInt, "", ""},
		{"offsets.topic.num.partitions", "1", kmsg.ConfigTypeInt, "", ""},
		{"offsets.topic.replication.factor", "1", kmsg.ConfigTypeShort, "", ""},
		{"socket.request.max.bytes", itoa(int64(s.cfg.MaxRequestBytes)), kmsg.ConfigTypeInt, "--max-request-bytes", ""},
	}
}

// readOnly explains why a config cannot be altered.
func (e configEntry) readOnly() string {
	if e.flag == "" {
		return e.name + " is fixed in the copyscope broker"
	}
	return e.name + " is set with " + e.flag + " when the copyscope broker starts; it cannot change at run time"
}
