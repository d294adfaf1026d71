package crashtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Committers of TestKill9OffsetCommits: groups x partitions of one topic.
const (
	commitGroups = 4
	commitParts  = 2
)

type groupPart struct {
	group string
	part  int32
}

// TestKill9OffsetCommits kills `copyscope broker --fsync always` 20 times
// at random moments while commits stream in (simple commits, Kafka's
// admin form, to 4 groups x 2 partitions, each offset larger than the
// last) and checks after each restart that every group's committed
// offset is the last acknowledged one, or the one in flight at the kill:
// an acknowledged commit is never lost and no offset goes backwards.
func TestKill9OffsetCommits(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	const topic = "offs"
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	acked := map[groupPart]int64{} // last acknowledged commit
	sent := map[groupPart]int64{}  // last commit sent
	total := 0
	for round := 0; round <= crashRounds; round++ {
		b := startBroker(t, dir)
		waitServing(t, b, topic)
		c, err := dial(b.addr)
		if err != nil {
			t.Fatal(err)
		}
		for gp, want := range acked {
			got, err := fetchCommitted(c, gp)
			if err != nil {
				b.kill(t)
				t.Fatalf("round %d: offset fetch %v: %v\n%s", round, gp, err, b.stderr())
			}
			if got < want || got > sent[gp] {
				b.kill(t)
				t.Fatalf("round %d: group %s partition %d has committed offset %d after kill -9; acknowledged %d, last sent %d", round, gp.group, gp.part, got, want, sent[gp])
			}
			acked[gp], sent[gp] = got, got
		}
		if round == crashRounds {
			_ = c.Close()
			b.kill(t)
			break
		}
		n := commitUntilKilled(t, b, c, round, time.Duration(50+rng.IntN(450))*time.Millisecond, acked, sent)
		total += n
		t.Logf("round %2d: %d commits acknowledged before kill -9", round, n)
	}
	if total == 0 {
		t.Fatal("no commit was ever acknowledged: the test proved nothing")
	}
	t.Logf("%d kill -9 crashes, %d acknowledged commits, every last one present after restart", crashRounds, total)
}

// commitUntilKilled commits increasing offsets over c until the broker is
// killed after d, and returns how many commits were acknowledged.
func commitUntilKilled(t *testing.T, b *broker, c *rawConn, round int, d time.Duration, acked, sent map[groupPart]int64) int {
	t.Helper()
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for i := 0; ; i++ {
			gp := groupPart{fmt.Sprintf("g%d", i%commitGroups), int32(i/commitGroups) % commitParts}
			off := int64(round+1)*10_000_000 + int64(i)
			sent[gp] = off
			err := commitOffset(c, gp, off)
			if errors.Is(err, kerr.CoordinatorLoadInProgress) {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				return // the kill
			}
			acked[gp] = off
			n++
		}
	}()
	time.Sleep(d)
	b.kill(t)
	n := <-done
	_ = c.Close()
	return n
}

func commitOffset(c *rawConn, gp groupPart, off int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.SetVersion(2)
	req.Group, req.Generation, req.RetentionTimeMillis = gp.group, -1, -1
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "offs", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: gp.part, Offset: off}}}}
	resp := kmsg.NewPtrOffsetCommitResponse()
	if err := c.do(req, resp); err != nil {
		return err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return fmt.Errorf("offset commit: malformed response %+v", resp)
	}
	return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
}

// fetchCommitted reads one committed offset, waiting out the replay.
func fetchCommitted(c *rawConn, gp groupPart) (int64, error) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.SetVersion(2)
		req.Group = gp.group
		req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "offs", Partitions: []int32{gp.part}}}
		resp := kmsg.NewPtrOffsetFetchResponse()
		if err := c.do(req, resp); err != nil {
			return 0, err
		}
		if resp.ErrorCode == kerr.CoordinatorLoadInProgress.Code {
			continue
		}
		if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return 0, fmt.Errorf("offset fetch: error %v, response %+v", kerr.ErrorForCode(resp.ErrorCode), resp)
		}
		p := resp.Topics[0].Partitions[0]
		return p.Offset, kerr.ErrorForCode(p.ErrorCode)
	}
	return 0, errors.New("offsets still loading after 10 s")
}
