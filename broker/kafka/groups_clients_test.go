package kafka

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kcatGroup runs `kcat -G group topic` until every assigned partition is
// at its end (-e) and returns its "partition offset value" lines.
func kcatGroup(t *testing.T, kcat, addr, group, topic string, extra ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"-b", addr, "-G", group, topic, "-e", "-q", "-f", "%p %o %s\n",
		"-X", "session.timeout.ms=6000", "-X", "auto.offset.reset=earliest"}, extra...)
	cmd := exec.CommandContext(ctx, kcat, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, stderr.String())
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

// checkSeq checks lines of "partition offset value" hold records first..
// n-1 of every partition exactly once, in partition order.
func checkSeq(t *testing.T, lines []string, partitions int32, first, n int64) {
	t.Helper()
	next := map[int32]int64{}
	for p := range partitions {
		next[p] = first
	}
	for _, l := range lines {
		var p int32
		var off int64
		var v string
		if _, err := fmt.Sscanf(l, "%d %d %s", &p, &off, &v); err != nil {
			t.Fatalf("kcat line %q: %v", l, err)
		}
		if want := fmt.Sprintf("p%d-%d", p, next[p]); off != next[p] || v != want {
			t.Fatalf("partition %d: got %q at offset %d, want %q at offset %d", p, v, off, want, next[p])
		}
		next[p]++
	}
	for p, got := range next {
		if got != n {
			t.Fatalf("partition %d: consumed up to offset %d, want %d", p, got, n)
		}
	}
}

// TestGroupKcat consumes a 4-partition topic with `kcat -G` (librdkafka's
// balanced consumer), twice: the second run of the same group after a
// broker restart must start at the offsets the first committed.
func TestGroupKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat); skipping the kcat -G group test")
	}
	dir := t.TempDir()
	b := startBroker(t, dir, nil)
	const topic, partitions, n = "kg", 4, 1000
	createTopic(t, newClient(t, b.addr), topic, partitions)
	produceSeq(t, b.addr, topic, partitions, n)
	checkSeq(t, kcatGroup(t, kcat, b.addr, "kg1", topic), partitions, 0, n)

	b.stop()
	b = startBroker(t, dir, nil)
	produceSeq(t, b.addr, topic, partitions, n)
	lines := kcatGroup(t, kcat, b.addr, "kg1", topic)
	for _, l := range lines {
		var p int32
		var off int64
		if _, err := fmt.Sscanf(l, "%d %d", &p, &off); err != nil || off < n {
			t.Fatalf("after restart kcat -G read %q: the group's committed offset %d was lost", l, n)
		}
	}
	if len(lines) != partitions*n {
		t.Fatalf("after restart kcat -G read %d records, want %d", len(lines), partitions*n)
	}
}

// groupChild is a franz-go group consumer in a child process (this test
// binary re-run as TestGroupChild), so that it can be killed with
// SIGKILL; it prints "partition offset" per record, unbuffered, and
// autocommits every 100 ms.
type groupChild struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	recs []childRecord
	done chan struct{}
}

type childRecord struct {
	p   int32
	off int64
	at  time.Time
}

func startGroupChild(t *testing.T, addr, group, topic string) *groupChild {
	t.Helper()
	k := &groupChild{done: make(chan struct{})}
	k.cmd = exec.Command(os.Args[0], "-test.run=^TestGroupChild$")
	k.cmd.Env = append(os.Environ(), "COPYSCOPE_GROUP_CHILD="+addr+","+group+","+topic)
	out, err := k.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.cmd.Process.Kill(); <-k.done })
	go func() {
		defer close(k.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r childRecord
			if _, err := fmt.Sscanf(sc.Text(), "%d %d", &r.p, &r.off); err == nil {
				r.at = time.Now()
				k.mu.Lock()
				k.recs = append(k.recs, r)
				k.mu.Unlock()
			}
		}
		_ = k.cmd.Wait()
	}()
	return k
}

// TestGroupChild is the child of startGroupChild; it skips unless run so.
func TestGroupChild(t *testing.T) {
	args := strings.Split(os.Getenv("COPYSCOPE_GROUP_CHILD"), ",")
	if len(args) != 3 {
		t.Skip("runs only as the child process of TestGroupHandoverKill9")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(args[0]), kgo.ConsumerGroup(args[1]), kgo.ConsumeTopics(args[2]),
		kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.AutoCommitInterval(100*time.Millisecond), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(context.Background())
		fs.EachRecord(func(r *kgo.Record) {
			// A slow consumer: the kill lands between commits.
			time.Sleep(300 * time.Microsecond)
			if _, err := fmt.Fprintf(os.Stdout, "%d %d\n", r.Partition, r.Offset); err != nil {
				os.Exit(1)
			}
		})
	}
}

func (k *groupChild) records() []childRecord {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.recs)
}

// waitGroup polls DescribeGroups until group is Stable with members
// members, each assigned something.
func waitGroup(t *testing.T, cl *kgo.Client, group string, members int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(context.Background(), cl)
		if err == nil && len(resp.Groups) == 1 && resp.Groups[0].State == "Stable" && len(resp.Groups[0].Members) == members {
			assigned := 0
			for _, m := range resp.Groups[0].Members {
				var a kmsg.ConsumerMemberAssignment
				if a.ReadFrom(m.MemberAssignment) == nil && len(a.Topics) > 0 {
					assigned++
				}
			}
			if assigned == members {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("group %s did not become Stable with %d assigned members within 30 s", group, members)
}

// committedOffsets reads the group's committed offsets with OffsetFetch.
func committedOffsets(t *testing.T, cl *kgo.Client, group, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = []kmsg.OffsetFetchRequestTopic{rt}
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	out := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[p.Partition] = p.Offset
		}
	}
	return out
}

// TestGroupHandoverKill9 runs two group consumers (franz-go, in child
// processes; kcat -G commits only when partitions are revoked) of one group:
// they split the 4 partitions; after kill -9 of one, the survivor must
// take its partitions within the session timeout (plus one heartbeat to
// learn of it) and resume at the committed offsets: nothing lost, only
// records after the last commit read twice.
func TestGroupHandoverKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 handover waits for a 6 s session timeout; skipped under -short")
	}
	b := startBroker(t, t.TempDir(), nil)
	admin := newClient(t, b.addr)
	const topic, group, partitions, n = "ho", "hog", 4, 1000
	createTopic(t, admin, topic, partitions)
	a := startGroupChild(t, b.addr, group, topic)
	waitGroup(t, admin, group, 1)
	s := startGroupChild(t, b.addr, group, topic)
	waitGroup(t, admin, group, 2)
	produceSeq(t, b.addr, topic, partitions, n)

	owned := func(k *groupChild) map[int32]int64 { // partition -> next offset
		out := map[int32]int64{}
		for _, r := range k.records() {
			out[r.p] = r.off + 1
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(a.records())+len(s.records()) < partitions*n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	pa, ps := owned(a), owned(s) // after the split
	for p := range pa {
		if _, ok := ps[p]; ok {
			t.Fatalf("partition %d consumed by both members: a %v, s %v", p, pa, ps)
		}
	}
	if len(pa) == 0 || len(ps) == 0 || len(pa)+len(ps) != partitions {
		t.Fatalf("the two members did not split the %d partitions: a %v, s %v", partitions, pa, ps)
	}
	// Kill the member in the middle of the next n records of its
	// partitions, so that some of them are consumed but not committed.
	produceSeq(t, b.addr, topic, partitions, n) // offsets n..2n-1
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if o := owned(a); slices.ContainsFunc(slices.Collect(maps.Values(o)), func(v int64) bool { return v > n+n/4 }) {
			break
		}
	}
	killed := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	committed := committedOffsets(t, admin, group, topic, partitions)
	waitGroup(t, admin, group, 1)
	handover := time.Since(killed)
	if got := assignedPartitions(t, admin, group, topic); got != partitions {
		t.Fatalf("after the handover the survivor is assigned %d partitions, want %d", got, partitions)
	}
	t.Logf("group Stable with the survivor assigned all %d partitions %v after kill -9 (session timeout 6 s)", partitions, handover.Round(10*time.Millisecond))
	if handover > 6*time.Second+2*time.Second {
		t.Errorf("handover took %v after kill -9, want within the 6 s session timeout plus a heartbeat and a rejoin", handover)
	}
	pa = owned(a)
	produceSeq(t, b.addr, topic, partitions, n) // offsets 2n..3n-1
	t.Logf("killed member had consumed up to %v, committed %v", pa, committed)

	first := map[int32]childRecord{}
	deadline = time.Now().Add(30 * time.Second)
	for len(first) < len(pa) && time.Now().Before(deadline) {
		for _, r := range s.records() {
			if _, mine := ps[r.p]; !mine {
				if _, seen := first[r.p]; !seen {
					first[r.p] = r
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for p, next := range pa {
		f, ok := first[p]
		switch {
		case !ok:
			t.Fatalf("partition %d of the killed member was never handed to the survivor", p)
		case f.off != committed[p]:
			t.Errorf("partition %d: survivor started at offset %d, committed was %d", p, f.off, committed[p])
		case f.off > next:
			t.Errorf("partition %d: survivor started at %d but the killed member had only consumed up to %d: records lost", p, f.off, next)
		}
		t.Logf("partition %d: the survivor resumed at the committed offset %d; %d records (consumed, not committed) read twice",
			p, f.off, next-f.off)
	}
	// Everything the survivor owns now ends at 3n.
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if o := owned(s); len(o) == partitions && allAt(o, 3*n) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("survivor did not consume every partition to its end %d: %v", 3*n, owned(s))
}

// assignedPartitions counts the partitions of topic the members of group
// are assigned, as DescribeGroups reports.
func assignedPartitions(t *testing.T, cl *kgo.Client, group, topic string) int {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatalf("describe groups: %v", err)
	}
	n := 0
	for _, g := range resp.Groups {
		for _, m := range g.Members {
			var a kmsg.ConsumerMemberAssignment
			if a.ReadFrom(m.MemberAssignment) == nil {
				for _, at := range a.Topics {
					if at.Topic == topic {
						n += len(at.Partitions)
					}
				}
			}
		}
	}
	return n
}

func allAt(m map[int32]int64, v int64) bool {
	for _, x := range m {
		if x != v {
			return false
		}
	}
	return true
}
