package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupSeeds are well-formed group requests for the fuzzers to mutate: a
// consumer joining, syncing, heartbeating, committing and fetching
// offsets, leaving, the group admin calls, configs and CreatePartitions
// (validate-only: the fuzzed store must not grow without bound).
func groupSeeds() []kmsg.Request {
	md := (&kmsg.ConsumerMemberMetadata{Version: 1, Topics: []string{"t"}}).AppendTo(nil)
	join := kmsg.NewPtrJoinGroupRequest()
	join.SetVersion(9)
	join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = "g", 6000, 6000, "consumer"
	join.MemberID = "m"
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: md}}
	join0 := kmsg.NewPtrJoinGroupRequest()
	join0.SetVersion(0)
	join0.Group, join0.SessionTimeoutMillis, join0.ProtocolType = "g", 6000, "consumer"
	join0.Protocols = join.Protocols
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.SetVersion(5)
	sync.Group, sync.Generation, sync.MemberID = "g", 1, "m"
	sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: "m", MemberAssignment: []byte{0, 1}}}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.SetVersion(4)
	hb.Group, hb.Generation, hb.MemberID = "g", 1, "m"
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.SetVersion(5)
	leave.Group = "g"
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: "m"}, {InstanceID: kmsg.StringPtr("i")}}
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.SetVersion(8)
	commit.Group, commit.Generation = "g", -1
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, Metadata: kmsg.StringPtr("md")}}}}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.SetVersion(8)
	fetch.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g"}, {Group: "h", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0, 1}}}}}
	find := kmsg.NewPtrFindCoordinatorRequest()
	find.SetVersion(4)
	find.CoordinatorKeys = []string{"g", ""}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.SetVersion(2)
	del.Groups = []string{"g", "x"}
	odel := kmsg.NewPtrOffsetDeleteRequest()
	odel.Group = "g"
	odel.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	desc := kmsg.NewPtrDescribeGroupsRequest()
	desc.SetVersion(5)
	desc.Groups = []string{"g"}
	dc := kmsg.NewPtrDescribeConfigsRequest()
	dc.SetVersion(4)
	dc.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "t"}, {ResourceType: kmsg.ConfigResourceTypeBroker}}
	ia := kmsg.NewPtrIncrementalAlterConfigsRequest()
	ia.SetVersion(1)
	ia.Resources = []kmsg.IncrementalAlterConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "t",
		Configs: []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: "retention.ms", Value: kmsg.StringPtr("1")}}}}
	cp := kmsg.NewPtrCreatePartitionsRequest()
	cp.SetVersion(3)
	cp.ValidateOnly = true
	cp.Topics = []kmsg.CreatePartitionsRequestTopic{{Topic: "t", Count: 3}}
	return []kmsg.Request{join, join0, sync, hb, leave, commit, fetch, find, del, odel, desc, dc, ia, cp}
}

// FuzzReplayOffsets feeds arbitrary bytes to the offsets log's replay
// decoder: whatever is on disk, it must not panic, and it only ever
// creates groups from well-formed commit records.
func FuzzReplayOffsets(f *testing.F) {
	f.Add(encodeOffsets("g", []offsetRecord{{tp: topicPartition{"t", 0}, c: committed{offset: 5, metadata: "m"}}, {tp: topicPartition{"t", 1}, del: true}}, 1))
	f.Add(encodeOffsets("", nil, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newCoordinator(nil, func(string, ...any) {}, nil, nil)
		_, _, _ = c.replayBatches(b)
		for _, g := range c.snapshot() {
			if len(g.offsets) == 0 && len(g.members) == 0 && g.state != groupDead {
				t.Fatalf("replay left an empty group %q", g.id)
			}
		}
	})
}
