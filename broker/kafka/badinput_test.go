package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// makeBatch encodes a v2 record batch of values with a valid CRC and no
// producer id.
func makeBatch(values ...[]byte) []byte { return makeIdempotentBatch(-1, -1, -1, values...) }

// makeIdempotentBatch encodes a v2 record batch from producer pid at epoch
// with first sequence seq.
func makeIdempotentBatch(pid int64, epoch int16, seq int32, values ...[]byte) []byte {
	var recs []byte
	for i, v := range values {
		var r []byte
		r = append(r, 0)                          // attributes
		r = binary.AppendVarint(r, 0)             // timestamp delta
		r = binary.AppendVarint(r, int64(i))      // offset delta
		r = binary.AppendVarint(r, -1)            // null key
		r = binary.AppendVarint(r, int64(len(v))) // value
		r = append(r, v...)
		r = binary.AppendVarint(r, 0) // no headers
		recs = binary.AppendVarint(recs, int64(len(r)))
		recs = append(recs, r...)
	}
	now := time.Now().UnixMilli()
	b := make([]byte, 0, 61+len(recs))
	b = binary.BigEndian.AppendUint64(b, 0)          // base offset
	b = binary.BigEndian.AppendUint32(b, 0)          // length, below
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // leader epoch
	b = append(b, 2)                                 // magic
	b = binary.BigEndian.AppendUint32(b, 0)          // crc, below
	b = binary.BigEndian.AppendUint16(b, 0)          // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)-1))
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, uint64(pid))
	b = binary.BigEndian.AppendUint16(b, uint16(epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawRequest sends req on c and parses the response.
func rawRequest(t *testing.T, c net.Conn, req kmsg.Request) kmsg.Response {
	t.Helper()
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw")).AppendRequest(nil, req, 9)
	if _, err := c.Write(frame); err != nil {
		t.Fatalf("write %s: %v", kmsg.NameForKey(req.Key()), err)
	}
	body := readResponse(t, c)
	if req.IsFlexible() && req.Key() != 18 {
		body = body[1:]
	}
	resp := req.ResponseKind()
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("parse %s response: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// readResponse reads one response frame and returns it after the
// correlation id.
func readResponse(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("read response size: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read response: %v", err)
	}
	if binary.BigEndian.Uint32(b) != 9 {
		t.Fatalf("correlation id %d, want 9", binary.BigEndian.Uint32(b))
	}
	return b[4:]
}

// expectClosed checks that the broker closed c without answering.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var one [1]byte
	n, err := c.Read(one[:])
	if n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("%s: broker did not close the connection (read %d bytes, %v)", what, n, err)
	}
}

// TestMalformedFrames sends garbage on fresh connections while a healthy
// connection stays open: each bad one is answered with a protocol error or
// closed, the healthy one keeps working, and nothing reaches the disk.
func TestMalformedFrames(t *testing.T) {
	b := startBroker(t, t.TempDir(), func(c *Config) { c.MaxRequestBytes = 1 << 20 })
	good := newClient(t, b.addr, kgo.DefaultProduceTopic("good"), kgo.AllowAutoTopicCreation())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := good.ProduceSync(ctx, &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	healthy := dialRaw(t, b.addr)
	rawRequest(t, healthy, kmsg.NewPtrApiVersionsRequest())
	before := dirDigest(t, b.dir)

	produceFrame := func(topic string, records []byte) []byte {
		req := kmsg.NewPtrProduceRequest()
		req.SetVersion(7)
		req.Acks, req.TimeoutMillis = 1, 1000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: records}}}}
		return kmsg.NewRequestFormatter().AppendRequest(nil, req, 9)
	}
	truncated := produceFrame("good", makeBatch([]byte("never stored")))
	truncated = truncated[:len(truncated)-20]
	binary.BigEndian.PutUint32(truncated, uint32(len(truncated)-4))

	closing := []struct {
		name  string
		bytes []byte
		eof   bool // half-close after writing
	}{
		{"negative size", []byte{0xff, 0xff, 0xff, 0xfe}, false},
		{"2 GiB size", []byte{0x80, 0, 0, 0}, false},
		{"2 GiB - 1 size", []byte{0x7f, 0xff, 0xff, 0xff}, false},
		{"over the request cap", []byte{0, 0x20, 0, 0}, false},
		{"truncated produce", truncated, false},
		{"eof inside a frame", append([]byte{0, 0, 0x10, 0}, make([]byte, 20)...), true},
		{"unknown api key", []byte{0, 0, 0, 10, 0x7f, 0, 0, 0, 0, 0, 0, 9, 0xff, 0xff}, false},
		{"tiny frame", []byte{0, 0, 0, 2, 0, 3}, false},
	}
	for _, c := range closing {
		conn := dialRaw(t, b.addr)
		if _, err := conn.Write(c.bytes); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.eof {
			conn.(*net.TCPConn).CloseWrite()
		}
		expectClosed(t, conn, c.name)
	}

	// Answered with protocol errors.
	conn := dialRaw(t, b.addr)
	av := kmsg.NewPtrApiVersionsRequest()
	av.SetVersion(4)
	frame := kmsg.NewRequestFormatter().AppendRequest(nil, av, 9)
	binary.BigEndian.PutUint16(frame[6:], 9) // ApiVersions v9
	conn.Write(frame)
	avr := kmsg.NewPtrApiVersionsResponse()
	if err := avr.ReadFrom(readResponse(t, conn)); err != nil || avr.ErrorCode != kerr.UnsupportedVersion.Code || len(avr.ApiKeys) == 0 {
		t.Fatalf("ApiVersions v9: %v, error %d, %d keys", err, avr.ErrorCode, len(avr.ApiKeys))
	}
	f13 := kmsg.NewPtrFetchRequest()
	f13.SetVersion(13)
	if r := rawRequest(t, conn, f13).(*kmsg.FetchResponse); r.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("Fetch v13: error %d, want UNSUPPORTED_VERSION", r.ErrorCode)
	}
	acls := kmsg.NewPtrDescribeACLsRequest()
	acls.SetVersion(1)
	if r := rawRequest(t, conn, acls).(*kmsg.DescribeACLsResponse); r.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("DescribeAcls: error %d, want UNSUPPORTED_VERSION (ACLs are not served)", r.ErrorCode)
	}
	long := strings.Repeat("a", 300)
	for _, name := range []string{"../x", long, "", "a/b", ".."} {
		md := kmsg.NewPtrMetadataRequest()
		md.SetVersion(12)
		md.AllowAutoTopicCreation = true
		md.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr(name)}}
		if r := rawRequest(t, conn, md).(*kmsg.MetadataResponse); r.Topics[0].ErrorCode != kerr.InvalidTopicException.Code {
			t.Errorf("metadata %.20q: error %d, want INVALID_TOPIC_EXCEPTION", name, r.Topics[0].ErrorCode)
		}
		ct := kmsg.NewPtrCreateTopicsRequest()
		ct.SetVersion(7)
		ct.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: name, NumPartitions: 1, ReplicationFactor: 1}}
		if r := rawRequest(t, conn, ct).(*kmsg.CreateTopicsResponse); r.Topics[0].ErrorCode != kerr.InvalidTopicException.Code {
			t.Errorf("create %.20q: error %d, want INVALID_TOPIC_EXCEPTION", name, r.Topics[0].ErrorCode)
		}
		conn.Write(produceFrame(name, makeBatch([]byte("x"))))
		pr := kmsg.NewPtrProduceResponse()
		pr.SetVersion(7)
		if err := pr.ReadFrom(readResponse(t, conn)); err != nil || pr.Topics[0].Partitions[0].ErrorCode != kerr.InvalidTopicException.Code {
			t.Errorf("produce %.20q: %v, want INVALID_TOPIC_EXCEPTION", name, err)
		}
	}
	// A batch with a broken CRC is refused and not stored.
	bad := makeBatch([]byte("corrupt me"))
	bad[len(bad)-3] ^= 0xff
	conn.Write(produceFrame("good", bad))
	pr := kmsg.NewPtrProduceResponse()
	pr.SetVersion(7)
	if err := pr.ReadFrom(readResponse(t, conn)); err != nil || pr.Topics[0].Partitions[0].ErrorCode != kerr.CorruptMessage.Code {
		t.Errorf("corrupt batch: %v, code %d, want CORRUPT_MESSAGE", err, pr.Topics[0].Partitions[0].ErrorCode)
	}

	if after := dirDigest(t, b.dir); after != before {
		t.Fatalf("bad input changed the data directory")
	}
	// The healthy connections still work.
	if r := rawRequest(t, healthy, kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse); r.ErrorCode != 0 {
		t.Fatalf("healthy connection: error %d", r.ErrorCode)
	}
	if err := good.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("healthy client after bad input: %v", err)
	}
}

// TestIdempotentRetry sends the same idempotent produce twice, as a client
// retrying after a lost response does: the second gets the original
// offsets and the log holds the records once; a gap in sequence numbers is
// refused.
func TestIdempotentRetry(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	if err := b.store.CreateTopic("idem", 1); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, b.addr)
	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.SetVersion(4)
	ipr := rawRequest(t, c, ip).(*kmsg.InitProducerIDResponse)
	if ipr.ErrorCode != 0 || ipr.ProducerID < 0 {
		t.Fatalf("InitProducerId: error %d id %d", ipr.ErrorCode, ipr.ProducerID)
	}
	if again := rawRequest(t, c, ip).(*kmsg.InitProducerIDResponse); again.ProducerID == ipr.ProducerID {
		t.Fatalf("two InitProducerId calls returned the same id %d", again.ProducerID)
	}
	produce := func(batch []byte) kmsg.ProduceResponseTopicPartition {
		req := kmsg.NewPtrProduceRequest()
		req.SetVersion(9)
		req.Acks, req.TimeoutMillis = -1, 1000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: "idem", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch}}}}
		return rawRequest(t, c, req).(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	}
	pid, epoch := ipr.ProducerID, ipr.ProducerEpoch
	first := produce(makeIdempotentBatch(pid, epoch, 0, []byte("a"), []byte("b")))
	second := produce(makeIdempotentBatch(pid, epoch, 2, []byte("c")))
	retry := produce(makeIdempotentBatch(pid, epoch, 2, []byte("c")))
	gap := produce(makeIdempotentBatch(pid, epoch, 7, []byte("d")))
	if first.ErrorCode != 0 || first.BaseOffset != 0 || second.ErrorCode != 0 || second.BaseOffset != 2 {
		t.Fatalf("first %+v second %+v", first, second)
	}
	if retry.ErrorCode != 0 || retry.BaseOffset != 2 {
		t.Fatalf("retry: error %d base %d, want the original offset 2", retry.ErrorCode, retry.BaseOffset)
	}
	if gap.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("sequence gap: error %d, want OUT_OF_ORDER_SEQUENCE_NUMBER", gap.ErrorCode)
	}
	p, _ := b.store.Partition("idem", 0)
	if end := p.EndOffset(); end != 3 {
		t.Fatalf("log holds %d records, want 3 (the retry must not duplicate)", end)
	}
}
