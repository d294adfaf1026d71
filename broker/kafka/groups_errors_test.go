package kafka

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func joinReq(group, member string, session, rebalance int32, md []byte) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Group, r.MemberID, r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = group, member, session, rebalance
	r.ProtocolType = "consumer"
	r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: md}}
	return r
}

func wantCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	code := int16(0)
	if want != nil {
		code = want.Code
	}
	if got != code {
		t.Errorf("%s: error %v, want %v", what, kerr.ErrorForCode(got), want)
	}
}

// TestGroupBadRequests sends hostile and stale group requests (absurd
// timeouts, huge metadata, unknown members, generations from the past,
// oversized commit metadata) and checks each gets Kafka's protocol error,
// and that the offsets log replays to exactly the accepted commits.
func TestGroupBadRequests(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir, nil)
	cl := newClient(t, b.addr)
	createTopic(t, cl, "t", 2)
	ctx := context.Background()
	do := func(req kmsg.Request) kmsg.Response {
		t.Helper()
		resp, err := cl.Request(ctx, req)
		if err != nil {
			t.Fatalf("%T: %v", req, err)
		}
		return resp
	}
	join := func(r *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
		t.Helper()
		return do(r).(*kmsg.JoinGroupResponse)
	}

	wantCode(t, "session timeout 1 ms", join(joinReq("g", "", 1, 1000, nil)).ErrorCode, kerr.InvalidSessionTimeout)
	wantCode(t, "session timeout 24 days", join(joinReq("g", "", math.MaxInt32, 1000, nil)).ErrorCode, kerr.InvalidSessionTimeout)
	wantCode(t, "2 MiB member metadata", join(joinReq("g", "", 6000, 1000, make([]byte, 2<<20))).ErrorCode, kerr.InvalidRequest)
	wantCode(t, "unknown member id", join(joinReq("g", "bogus", 6000, 1000, nil)).ErrorCode, kerr.UnknownMemberID)

	first := join(joinReq("g", "", 6000, math.MaxInt32, []byte{1}))
	wantCode(t, "first join without an id", first.ErrorCode, kerr.MemberIDRequired)
	j := join(joinReq("g", first.MemberID, 6000, math.MaxInt32, []byte{1})) // an absurd rebalance timeout is capped, not waited for
	wantCode(t, "rejoin with the given id", j.ErrorCode, nil)
	if j.Generation != 1 || j.LeaderID != first.MemberID || len(j.Members) != 1 || string(j.Members[0].ProtocolMetadata) != "\x01" {
		t.Fatalf("join: generation %d leader %q members %+v, want generation 1 led by %q with its metadata", j.Generation, j.LeaderID, j.Members, first.MemberID)
	}
	me := j.MemberID

	sync := func(gen int32, member string) *kmsg.SyncGroupResponse {
		r := kmsg.NewPtrSyncGroupRequest()
		r.Group, r.Generation, r.MemberID = "g", gen, member
		r.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: me, MemberAssignment: []byte("mine")}}
		return do(r).(*kmsg.SyncGroupResponse)
	}
	wantCode(t, "sync from a past generation", sync(0, me).ErrorCode, kerr.IllegalGeneration)
	wantCode(t, "sync by an unknown member", sync(1, "bogus").ErrorCode, kerr.UnknownMemberID)
	if s := sync(1, me); s.ErrorCode != 0 || string(s.MemberAssignment) != "mine" {
		t.Fatalf("leader sync: error %v, assignment %q", kerr.ErrorForCode(s.ErrorCode), s.MemberAssignment)
	}

	hb := func(gen int32, member string) int16 {
		r := kmsg.NewPtrHeartbeatRequest()
		r.Group, r.Generation, r.MemberID = "g", gen, member
		return do(r).(*kmsg.HeartbeatResponse).ErrorCode
	}
	wantCode(t, "heartbeat of an unknown member", hb(1, "bogus"), kerr.UnknownMemberID)
	wantCode(t, "heartbeat from a past generation", hb(0, me), kerr.IllegalGeneration)
	wantCode(t, "heartbeat", hb(1, me), nil)

	commit := func(group string, gen int32, member, topic string, offset int64, md string) int16 {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Group, r.Generation, r.MemberID = group, gen, member
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 1, Offset: offset, Metadata: kmsg.StringPtr(md)}}}}
		return do(r).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	wantCode(t, "commit from a past generation", commit("g", 0, me, "t", 5, ""), kerr.IllegalGeneration)
	wantCode(t, "commit by an unknown member", commit("g", 1, "bogus", "t", 5, ""), kerr.UnknownMemberID)
	wantCode(t, "simple commit to a group with members", commit("g", -1, "", "t", 5, ""), kerr.UnknownMemberID)
	wantCode(t, "commit with 5000 bytes of metadata", commit("g", 1, me, "t", 5, strings.Repeat("m", 5000)), kerr.OffsetMetadataTooLarge)
	wantCode(t, "commit to an unknown topic", commit("g", 1, me, "nope", 5, ""), kerr.UnknownTopicOrPartition)
	wantCode(t, "commit", commit("g", 1, me, "t", 42, "md"), nil)
	wantCode(t, "simple commit to another group", commit("simple", -1, "", "t", 7, ""), nil)

	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"g", "unknown"}
	dr := do(del).(*kmsg.DeleteGroupsResponse)
	wantCode(t, "delete a group with members", dr.Groups[0].ErrorCode, kerr.NonEmptyGroup)
	wantCode(t, "delete an unknown group", dr.Groups[1].ErrorCode, kerr.GroupIDNotFound)

	produce := kmsg.NewPtrProduceRequest()
	produce.Acks = -1
	produce.TimeoutMillis = 5000
	produce.Topics = []kmsg.ProduceRequestTopic{{Topic: offsetsTopic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: makeBatch([]byte("forged"))}}}}
	wantCode(t, "produce to "+offsetsTopic, do(produce).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode, kerr.InvalidTopicException)

	// The offsets log holds exactly the two accepted commits.
	b.stop()
	b = startBroker(t, dir, nil)
	cl = newClient(t, b.addr, kgo.RetryTimeout(0))
	for group, want := range map[string]int64{"g": 42, "simple": 7} {
		got := committedOffsets(t, cl, group, "t", 2)
		if got[1] != want || got[0] != -1 {
			t.Errorf("after restart group %s has offsets %v, want partition 1 at %d and none for 0", group, got, want)
		}
	}
}

// TestUnsupportedAnswered checks that APIs the broker does not serve are
// answered, never by closing the connection: with UNSUPPORTED_VERSION
// where the response has a top-level error code, else with an empty
// response; the connection then serves the next request.
func TestUnsupportedAnswered(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	conn := dialRaw(t, b.addr)
	acls := kmsg.NewPtrDescribeACLsRequest()
	acls.SetVersion(1)
	wantCode(t, "DescribeAcls", rawRequest(t, conn, acls).(*kmsg.DescribeACLsResponse).ErrorCode, kerr.UnsupportedVersion)
	dr := kmsg.NewPtrDeleteRecordsRequest() // no top-level error code
	dr.SetVersion(1)
	dr.Topics = []kmsg.DeleteRecordsRequestTopic{{Topic: "t", Partitions: []kmsg.DeleteRecordsRequestTopicPartition{{Partition: 0, Offset: 1}}}}
	if r := rawRequest(t, conn, dr).(*kmsg.DeleteRecordsResponse); len(r.Topics) != 0 {
		t.Fatalf("DeleteRecords: %+v, want an empty response", r)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.SetVersion(2)
	fc.CoordinatorKey = "g"
	if r := rawRequest(t, conn, fc).(*kmsg.FindCoordinatorResponse); r.ErrorCode != 0 || r.NodeID != 0 {
		t.Fatalf("FindCoordinator on the same connection after unsupported requests: %+v", r)
	}
}

// TestStaticRestartNoRebalance checks KIP-345's point: a static follower
// that restarts (joins again with its instance id and no member id) gets
// its assignment back in the same generation, without a rebalance, and
// its old member id is fenced.
func TestStaticRestartNoRebalance(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	lc, fc := newClient(t, b.addr), newClient(t, b.addr) // one connection each: a JoinGroup blocks its own
	ctx := context.Background()
	join := func(cl *kgo.Client, member, instance string) *kmsg.JoinGroupResponse {
		t.Helper()
		r := joinReq("st", member, 6000, 6000, []byte(instance))
		r.InstanceID = kmsg.StringPtr(instance)
		resp, err := r.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	sync := func(cl *kgo.Client, gen int32, member, instance string, assign map[string]string) *kmsg.SyncGroupResponse {
		t.Helper()
		r := kmsg.NewPtrSyncGroupRequest()
		r.Group, r.Generation, r.MemberID, r.InstanceID = "st", gen, member, kmsg.StringPtr(instance)
		for m, a := range assign {
			r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: m, MemberAssignment: []byte(a)})
		}
		resp, err := r.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	hb := func(cl *kgo.Client, gen int32, member, instance string) int16 {
		t.Helper()
		r := kmsg.NewPtrHeartbeatRequest()
		r.Group, r.Generation, r.MemberID, r.InstanceID = "st", gen, member, kmsg.StringPtr(instance)
		resp, err := r.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.ErrorCode
	}
	l := join(lc, "", "l")
	wantCode(t, "leader joins", l.ErrorCode, nil)
	wantCode(t, "leader syncs", sync(lc, l.Generation, l.MemberID, "l", map[string]string{l.MemberID: "a"}).ErrorCode, nil)
	fch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { fch <- join(fc, "", "f") }()
	for hb(lc, l.Generation, l.MemberID, "l") != kerr.RebalanceInProgress.Code {
		time.Sleep(10 * time.Millisecond)
	}
	l = join(lc, l.MemberID, "l")
	f := <-fch
	if l.Generation != 2 || f.Generation != 2 || l.LeaderID != l.MemberID {
		t.Fatalf("second generation: leader %+v follower %+v", l, f)
	}
	wantCode(t, "leader assigns", sync(lc, 2, l.MemberID, "l", map[string]string{l.MemberID: "a", f.MemberID: "b"}).ErrorCode, nil)
	if s := sync(fc, 2, f.MemberID, "f", nil); string(s.MemberAssignment) != "b" {
		t.Fatalf("follower's assignment %q, want b", s.MemberAssignment)
	}

	f2 := join(fc, "", "f") // the follower restarted
	if f2.ErrorCode != 0 || f2.Generation != 2 || f2.MemberID == f.MemberID {
		t.Fatalf("restarted static follower: error %v generation %d member %q, want generation 2 and a new member id", kerr.ErrorForCode(f2.ErrorCode), f2.Generation, f2.MemberID)
	}
	if s := sync(fc, 2, f2.MemberID, "f", nil); s.ErrorCode != 0 || string(s.MemberAssignment) != "b" {
		t.Fatalf("restarted follower's sync: error %v assignment %q, want its assignment b", kerr.ErrorForCode(s.ErrorCode), s.MemberAssignment)
	}
	wantCode(t, "leader's heartbeat after the restart (no rebalance)", hb(lc, 2, l.MemberID, "l"), nil)
	wantCode(t, "the old incarnation's heartbeat", hb(fc, 2, f.MemberID, "f"), kerr.FencedInstanceID)
}

// TestJoinProtocolChange checks the protocol rules: a lone member may
// switch protocols; a second member with none in common with the first
// is refused with INCONSISTENT_GROUP_PROTOCOL.
func TestJoinProtocolChange(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	cl := newClient(t, b.addr)
	ctx := context.Background()
	join := func(member, protocol string) *kmsg.JoinGroupResponse {
		t.Helper()
		for {
			r := joinReq("pc", member, 6000, 6000, nil)
			r.Protocols[0].Name = protocol
			resp, err := r.RequestWith(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ErrorCode != kerr.MemberIDRequired.Code {
				return resp
			}
			member = resp.MemberID
		}
	}
	a := join("", "range")
	wantCode(t, "first join", a.ErrorCode, nil)
	a2 := join(a.MemberID, "cooperative-sticky")
	if a2.ErrorCode != 0 || a2.Protocol == nil || *a2.Protocol != "cooperative-sticky" || a2.Generation != a.Generation+1 {
		t.Fatalf("lone member switching protocol: %+v", a2)
	}
	wantCode(t, "second member with no common protocol", join("", "roundrobin").ErrorCode, kerr.InconsistentGroupProtocol)
}
