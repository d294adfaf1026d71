package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// seen is a consumed record as both clients report it.
type seen struct {
	offset int64
	key    string
	tag    string
}

func (s seen) String() string { return fmt.Sprintf("%d/%s/%s", s.offset, s.key, s.tag) }

// startPathBroker starts a broker with one listener per transfer path and
// returns their addresses by path.
func startPathBroker(t *testing.T) (*testBroker, map[string]string) {
	t.Helper()
	b := startBroker(t, t.TempDir(), func(c *Config) {
		c.Listeners = nil
		for _, p := range transfer.Names() {
			c.Listeners = append(c.Listeners, Listener{Addr: "127.0.0.1:0", Path: p})
		}
	})
	addrs := map[string]string{}
	for _, l := range b.srv.Addrs() {
		addrs[l.Path] = l.Addr
	}
	return b, addrs
}

// produceTagged produces n uncompressed records in batches of mixed tags:
// record i has tag t<i%5> (none when i%7 == 0) and key k<i%3>-<i>; records
// 400-599 all have tag z, so whole batches hold no t1 or t3.
func produceTagged(t *testing.T, addr, topic string, n int) []seen {
	t.Helper()
	cl := newClient(t, addr, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(50*time.Millisecond), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, cl, topic, 1)
	var all []seen
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range n {
		s := seen{offset: int64(i), key: fmt.Sprintf("k%d-%d", i%3, i), tag: fmt.Sprintf("t%d", i%5)}
		if i%7 == 0 {
			s.tag = ""
		}
		if i >= 400 && i < 600 {
			s.tag = "z"
		}
		if i == n-1 {
			s.tag = "end" // every test filter keeps the last record
		}
		r := &kgo.Record{Key: []byte(s.key), Value: bytes.Repeat([]byte{'v'}, 50+i%100)}
		if s.tag != "" {
			r.Headers = []kgo.RecordHeader{{Key: "tag", Value: []byte(s.tag)}}
		}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
		all = append(all, s)
		if i%250 == 249 {
			cl.Flush(ctx) // several requests, many batches
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return all
}

func keep(all []seen, from int64, tags ...string) []seen {
	var out []seen
	for _, s := range all {
		if s.offset >= from && s.tag != "" && slices.Contains(tags, s.tag) {
			out = append(out, s)
		}
	}
	return out
}

// kgoConsume reads partition 0 of topic from offset with client id until
// the record at offset last arrives (the tests' logs end with a record
// every filter keeps), and returns what arrived.
func kgoConsume(t *testing.T, addr, topic, id string, from, last int64) ([]seen, error) {
	t.Helper()
	cl := newClient(t, addr, kgo.ClientID(id), kgo.FetchMaxWait(200*time.Millisecond), kgo.FetchMaxBytes(64<<10),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []seen
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return got, fmt.Errorf("franz-go did not reach offset %d in time (got %d records)", last, len(got))
		}
		for _, e := range fs.Errors() {
			return got, e.Err
		}
		for _, r := range fs.Records() {
			s := seen{offset: r.Offset, key: string(r.Key)}
			for _, h := range r.Headers {
				if h.Key == "tag" {
					s.tag = string(h.Value)
					break
				}
			}
			got = append(got, s)
			if r.Offset >= last {
				return got, nil
			}
		}
	}
}

// kcatConsume does the same with kcat (librdkafka).
func kcatConsume(t *testing.T, kcat, addr, topic, id string, from int64) ([]seen, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-b", addr, "-X", "client.id="+id, "-t", topic, "-p", "0",
		"-C", "-o", strconv.FormatInt(from, 10), "-e", "-q", "-f", "%o %k %h\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kcat: %v: %s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "ERROR") {
		return nil, fmt.Errorf("kcat: %s", stderr.String())
	}
	var got []seen
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l == "" {
			continue
		}
		f := strings.Fields(l)
		off, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || len(f) < 2 {
			return nil, fmt.Errorf("kcat line %q", l)
		}
		s := seen{offset: off, key: f[1]}
		if len(f) > 2 {
			for _, h := range strings.Split(f[2], ",") {
				if v, ok := strings.CutPrefix(h, "tag="); ok {
					s.tag = v
					break
				}
			}
		}
		got = append(got, s)
	}
	return got, nil
}

// clientKeep is the consumer's own exact check, as on the by-reference
// paths (and in RocketMQ, after the broker's tag-hash check).
func clientKeep(got []seen, tags ...string) []seen {
	return keep(got, 0, tags...)
}

// TestFilterClients consumes a topic of mixed tags through a filtered
// subscription on every path with franz-go and kcat, from the start and
// resumed from an offset in the middle of a batch: on read and mmap
// exactly the matching records arrive, in order, with their offsets; on
// sendfile, splice and zerocopy whole batches arrive and the client-side
// check leaves the same records. The ground truth is the full topic
// filtered record by record.
func TestFilterClients(t *testing.T) {
	kcat, kcatErr := exec.LookPath("kcat")
	_, addrs := startPathBroker(t)
	const topic, n = "tagged", 1000
	all := produceTagged(t, addrs["read"], topic, n)
	last := all[len(all)-1].offset
	tags := []string{"t1", "t3", "end"}
	id := "test-consumer filter=t1||t3||end"
	for _, path := range transfer.Names() {
		for _, from := range []int64{0, 333} {
			want := keep(all, from, tags...)
			_, viewer := mustPath(t, path).(transfer.Viewer)
			check := func(client string, got []seen, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s on %s from %d: %v", client, path, from, err)
				}
				got = slices.DeleteFunc(got, func(s seen) bool { return s.offset < from })
				if !viewer {
					if len(got) != int(last-from+1) {
						t.Errorf("%s on %s from %d: %d records, want the whole topic's %d (by-reference paths send whole batches)", client, path, from, len(got), last-from+1)
					}
					got = clientKeep(got, tags...)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s on %s from %d: got %d records %v\nwant %d %v", client, path, from, len(got), head(got), len(want), head(want))
				}
			}
			got, err := kgoConsume(t, addrs[path], topic, id, from, last)
			check("franz-go", got, err)
			if kcatErr == nil {
				got, err = kcatConsume(t, kcat, addrs[path], topic, id, from)
				check("kcat", got, err)
			}
		}
	}
	if kcatErr != nil {
		t.Skip("kcat is not installed (apt-get install kcat): franz-go checked, kcat not")
	}
}

func head(s []seen) []seen { return s[:min(len(s), 8)] }

func mustPath(t *testing.T, name string) transfer.Path {
	t.Helper()
	p, err := transfer.New(name, transfer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestFilterBadExpression: a malformed expression fails the client's
// fetches with INVALID_CONFIG on every path, and nothing is written.
func TestFilterBadExpression(t *testing.T) {
	b, addrs := startPathBroker(t)
	all := produceTagged(t, addrs["read"], "tagged", 50)
	before := dirDigest(t, b.dir)
	for _, path := range transfer.Names() {
		for _, id := range []string{"filter=", "x filter=a|b", "filter=a||", "filter=key:"} {
			_, err := kgoConsume(t, addrs[path], "tagged", id, 0, all[len(all)-1].offset)
			if !errors.Is(err, kerr.InvalidConfig) {
				t.Errorf("%s, client.id %q: err %v, want INVALID_CONFIG", path, id, err)
			}
		}
	}
	if after := dirDigest(t, b.dir); after != before {
		t.Errorf("a bad filter changed the data directory")
	}
}

// TestFilterCompressed: a filtered read over a compressed batch fails that
// partition with UNSUPPORTED_COMPRESSION_TYPE on the paths that filter.
func TestFilterCompressed(t *testing.T) {
	_, addrs := startPathBroker(t)
	cl := newClient(t, addrs["read"], kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.DefaultProduceTopic("snappy"))
	createTopic(t, cl, "snappy", 1)
	r := &kgo.Record{Value: bytes.Repeat([]byte("compress me "), 100), Headers: []kgo.RecordHeader{{Key: "tag", Value: []byte("a")}}}
	if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"read", "mmap"} {
		_, err := kgoConsume(t, addrs[path], "snappy", "filter=a", 0, 0)
		if !errors.Is(err, kerr.UnsupportedCompressionType) {
			t.Errorf("%s: err %v, want UNSUPPORTED_COMPRESSION_TYPE", path, err)
		}
	}
	got, err := kgoConsume(t, addrs["sendfile"], "snappy", "filter=a", 0, 0)
	if err != nil || len(got) != 1 {
		t.Errorf("sendfile (whole batches): got %v, %v; want the one record", got, err)
	}
}

// TestFilterGroupResume: a franz-go group consumer with a filtered client
// id consumes part of the topic, commits and leaves; a second member of
// the group resumes from the committed offset. Together they see every
// matching record exactly once, in order (after the client-side check on
// the by-reference paths), on every path.
func TestFilterGroupResume(t *testing.T) {
	_, addrs := startPathBroker(t)
	const topic, n = "tagged", 1000
	all := produceTagged(t, addrs["read"], topic, n)
	tags := []string{"t1", "t3", "end"}
	want := keep(all, 0, tags...)
	id := "grp filter=t1||t3||end"
	for _, path := range transfer.Names() {
		group := "g-" + path
		member := func(stopAfter int) []seen {
			t.Helper()
			cl := newClient(t, addrs[path], kgo.ClientID(id), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.SessionTimeout(6*time.Second),
				kgo.DisableAutoCommit(), kgo.FetchMaxBytes(16<<10), kgo.FetchMaxWait(200*time.Millisecond))
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var got []seen
			for {
				fs := cl.PollRecords(ctx, 50)
				if ctx.Err() != nil {
					t.Fatalf("%s: member consumed %d matches, no more within 30 s", path, len(got))
				}
				fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("%s: fetch: %v", path, err) })
				for _, r := range fs.Records() {
					s := seen{offset: r.Offset, key: string(r.Key)}
					for _, h := range r.Headers {
						if h.Key == "tag" {
							s.tag = string(h.Value)
						}
					}
					got = append(got, s)
				}
				if err := cl.CommitRecords(ctx, fs.Records()...); err != nil {
					t.Fatalf("%s: commit: %v", path, err)
				}
				matches := clientKeep(got, tags...)
				if len(matches) >= stopAfter || (len(got) > 0 && got[len(got)-1].offset == all[len(all)-1].offset) {
					return matches
				}
			}
		}
		first := member(len(want) / 3)
		second := member(len(want))
		if got := append(first, second...); !slices.Equal(got, want) {
			t.Errorf("%s: the two members saw %d matches (%d + %d), want %d exactly once: first %v, second from %v",
				path, len(got), len(first), len(second), len(want), head(first), head(second))
		}
	}
}

func TestClientFilter(t *testing.T) {
	cases := []struct {
		id, expr string
		ok       bool
	}{
		{"", "", false},
		{"app", "", false},
		{"filter=a||b", "a||b", true},
		{"billing filter=t1||key:user-", "t1||key:user-", true},
		{"filter=key:x;v2", "key:x", true},
		{"v2;filter=a", "a", true},
		{"nofilter=a", "", false},
		{"filter=", "", true},
	}
	for _, c := range cases {
		expr, ok := clientFilter(c.id)
		if expr != c.expr || ok != c.ok {
			t.Errorf("clientFilter(%q) = %q, %v; want %q, %v", c.id, expr, ok, c.expr, c.ok)
		}
	}
}
