package crashtest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// binary is the copyscope binary TestMain builds; written once before any
// test runs and only read afterwards.
var copyscopeBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if !testingShort() {
		dir, err := os.MkdirTemp("", "crashtest-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "crashtest: temp dir for the binary:", err)
			return 2
		}
		defer os.RemoveAll(dir)
		copyscopeBin = filepath.Join(dir, "copyscope")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if p, err := exec.LookPath("go"); err == nil {
			gobin = p
		}
		cmd := exec.Command(gobin, "build", "-o", copyscopeBin, "github.com/copyscope/copyscope/cmd/copyscope")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "crashtest: go build ./cmd/copyscope failed:", err)
			return 2
		}
	}
	return m.Run()
}

// testingShort reads -short before m.Run has parsed the flags.
func testingShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" || a == "-short" {
			return true
		}
	}
	return false
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("crash test skipped under -short: it kills a broker child 20 times and writes a 1 GiB log; run go test ./broker/crashtest/")
	}
}

// broker is a running `copyscope broker` child.
type broker struct {
	cmd   *exec.Cmd
	addr  string
	start time.Time
	mu    sync.Mutex
	log   strings.Builder // its stderr, for failure messages
	exit  chan error
}

var listenRE = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// startBroker runs the broker on dir and waits for its listening address.
func startBroker(t *testing.T, dir string, extra ...string) *broker {
	t.Helper()
	b := &broker{exit: make(chan error, 1)}
	args := append([]string{"broker", "--data", dir, "--listen", "127.0.0.1:0",
		"--fsync", "always", "--partitions", "2"}, extra...)
	b.cmd = exec.Command(copyscopeBin, args...)
	pr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	b.start = time.Now()
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.log.WriteString(line + "\n")
			b.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		b.exit <- b.cmd.Wait()
	}()
	select {
	case b.addr = <-addrc:
	case err := <-b.exit:
		t.Fatalf("broker exited before listening: %v\n%s", err, b.stderr())
	case <-time.After(30 * time.Second):
		b.kill(t)
		t.Fatalf("broker did not listen within 30 s\n%s", b.stderr())
	}
	return b
}

func (b *broker) stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// kill sends SIGKILL and reaps the child.
func (b *broker) kill(t *testing.T) {
	t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-b.exit:
	case <-time.After(30 * time.Second):
		t.Fatalf("broker pid %d did not die after SIGKILL", b.cmd.Process.Pid)
	}
}

// rawConn speaks the Kafka protocol with fixed, non-flexible versions so
// the test sees exactly the bytes the broker serves.
type rawConn struct {
	c    net.Conn
	f    *kmsg.RequestFormatter
	corr int32
}

func dial(addr string) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, f: kmsg.NewRequestFormatter(kmsg.FormatterClientID("crashtest"))}, nil
}

func (r *rawConn) Close() error { return r.c.Close() }

func (r *rawConn) do(req kmsg.Request, resp kmsg.Response) error {
	r.corr++
	if err := r.c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		return err
	}
	if _, err := r.c.Write(r.f.AppendRequest(nil, req, r.corr)); err != nil {
		return err
	}
	var sz [4]byte
	if _, err := io.ReadFull(r.c, sz[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(sz[:])
	if n < 4 || n > 256<<20 {
		return fmt.Errorf("response size %d", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.c, body); err != nil {
		return err
	}
	if c := int32(binary.BigEndian.Uint32(body)); c != r.corr {
		return fmt.Errorf("correlation id %d, want %d", c, r.corr)
	}
	resp.SetVersion(req.GetVersion())
	return resp.ReadFrom(body[4:])
}

// metadata asks for topic (auto-creating it) and returns its partition count.
func (r *rawConn) metadata(topic string) (int, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(1)
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp := kmsg.NewPtrMetadataResponse()
	if err := r.do(req, resp); err != nil {
		return 0, err
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) == 0 {
		return 0, fmt.Errorf("metadata for %s: %+v", topic, resp.Topics)
	}
	return len(resp.Topics[0].Partitions), nil
}

// listOffset returns the earliest (-2) or latest (-1) offset of a partition.
func (r *rawConn) listOffset(topic string, part int32, which int64) (int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(1)
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = part, which
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := kmsg.NewPtrListOffsetsResponse()
	if err := r.do(req, resp); err != nil {
		return 0, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("list offsets: malformed response %+v", resp)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		return 0, fmt.Errorf("list offsets %s-%d: error code %d", topic, part, p.ErrorCode)
	}
	return p.Offset, nil
}

// waitServing polls until Metadata and ListOffsets for topic succeed and
// returns the time since the child was started.
func waitServing(t *testing.T, b *broker, topic string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		c, err := dial(b.addr)
		if err == nil {
			_, err = c.metadata(topic)
			if err == nil {
				_, err = c.listOffset(topic, 0, -1)
			}
			_ = c.Close()
			if err == nil {
				return time.Since(b.start)
			}
		}
		last = err
		time.Sleep(2 * time.Millisecond)
	}
	b.kill(t)
	t.Fatalf("broker at %s not serving %s within 30 s: %v\n%s", b.addr, topic, last, b.stderr())
	return 0
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// served is one record as fetched back.
type served struct {
	part   int32
	offset int64
}

// fetchAll reads a partition from its start to its high watermark over
// Fetch v4, checking every batch's CRC-32C and that offsets are
// contiguous, and returns value -> position of every record.
func fetchAll(t *testing.T, c *rawConn, topic string, part int32, into map[string]served) (records int) {
	t.Helper()
	start, err := c.listOffset(topic, part, -2)
	if err != nil {
		t.Fatal(err)
	}
	hwm, err := c.listOffset(topic, part, -1)
	if err != nil {
		t.Fatal(err)
	}
	next := start
	for iter := 0; next < hwm; iter++ {
		if iter > 100000 {
			t.Fatalf("fetch %s-%d: no progress at offset %d of %d", topic, part, next, hwm)
		}
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(4)
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, 100, 1, 8<<20
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = topic
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = part, next, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
		req.Topics = append(req.Topics, ft)
		resp := kmsg.NewPtrFetchResponse()
		if err := c.do(req, resp); err != nil {
			t.Fatalf("fetch %s-%d at %d: %v", topic, part, next, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("fetch: malformed response")
		}
		rp := resp.Topics[0].Partitions[0]
		if rp.ErrorCode != 0 {
			t.Fatalf("fetch %s-%d at %d: error code %d", topic, part, next, rp.ErrorCode)
		}
		b := rp.RecordBatches
		if len(b) == 0 {
			t.Fatalf("fetch %s-%d at %d below high watermark %d returned nothing", topic, part, next, hwm)
		}
		for len(b) >= 61 {
			size := int(int32(binary.BigEndian.Uint32(b[8:]))) + 12
			if size < 61 || size > len(b) {
				break // a partial trailing batch is legal in Kafka; fetch it next time
			}
			batch := b[:size]
			b = b[size:]
			base := int64(binary.BigEndian.Uint64(batch))
			last := base + int64(int32(binary.BigEndian.Uint32(batch[23:])))
			if last < next {
				continue // a batch before the requested offset
			}
			if base != next {
				t.Fatalf("%s-%d: batch at offset %d, want %d (offsets not contiguous)", topic, part, base, next)
			}
			if got, want := crc32.Checksum(batch[21:], castagnoli), binary.BigEndian.Uint32(batch[17:]); got != want {
				t.Fatalf("%s-%d: batch at offset %d fails its CRC-32C (stored %08x, computed %08x)", topic, part, base, want, got)
			}
			if attrs := binary.BigEndian.Uint16(batch[21:]); attrs&7 != 0 {
				t.Fatalf("%s-%d: batch at %d is compressed (codec %d); the producer was set to none", topic, part, base, attrs&7)
			}
			for i, v := range recordValues(t, batch) {
				if prev, dup := into[v]; dup {
					t.Fatalf("record %q stored twice: %s-%d@%d and %s-%d@%d", v, topic, prev.part, prev.offset, topic, part, base+int64(i))
				}
				into[v] = served{part, base + int64(i)}
				records++
			}
			next = last + 1
		}
	}
	return records
}

// recordValues decodes the values of an uncompressed v2 batch.
func recordValues(t *testing.T, batch []byte) []string {
	t.Helper()
	n := int(int32(binary.BigEndian.Uint32(batch[57:])))
	rec := batch[61:]
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		l, k := binary.Varint(rec)
		if k <= 0 || l < 0 || int(l) > len(rec)-k {
			t.Fatalf("record %d of batch: bad length", i)
		}
		body := rec[k : k+int(l)]
		rec = rec[k+int(l):]
		body = body[1:]          // attributes
		for j := 0; j < 2; j++ { // timestamp delta, offset delta
			_, m := binary.Varint(body)
			body = body[m:]
		}
		kl, m := binary.Varint(body)
		body = body[m:]
		if kl > 0 {
			body = body[kl:]
		}
		vl, m := binary.Varint(body)
		body = body[m:]
		if vl < 0 || int(vl) > len(body) {
			t.Fatalf("record %d of batch: bad value length %d", i, vl)
		}
		out = append(out, string(body[:vl]))
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
