package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/recordbatch"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Broker-side dead letters, RocketMQ style (its consumers send a failed
// message back by offset and the broker copies it to %DLQ%): a consumer
// that gave up on a record produces a tiny reference record to a topic
// whose name ends in DeadLetterSuffix (e.g. "orders.dlq"), with no value
// and the header RefHeader = "topic/partition/offset". The broker reads
// the original record from its log and appends it to the dead-letter
// topic in the reference's place: key, value and headers byte-identical,
// with its original timestamp. A record without the header is appended as
// sent, which is the client-side dead letter (the consumer re-produces the
// whole record, as Spring Kafka's DeadLetterPublishingRecoverer does).
//
// The original is read through the producing connection's path when it
// sees bytes (mmap: a copy out of the mapping; read: pread), else with a
// pread of its batch (sendfile, splice, zerocopy never bring bytes to user
// space, so a dead letter costs them a read first).
//
// A batch mixing references and plain records, a reference with a value,
// a malformed header, an unknown topic or partition, an offset outside the
// log or a compressed original fails the partition with INVALID_RECORD
// and a message saying which; nothing of that partition is written.
const (
	DeadLetterSuffix = ".dlq"
	RefHeader        = "copyscope-dlq-ref"
)

// maxDeadLetterRefs bounds the references one produce partition resolves.
const maxDeadLetterRefs = 100_000

// errBadRef wraps every rejected dead-letter reference.
var errBadRef = errors.New("dead-letter reference rejected")

// produceDeadLetters resolves the references in produce batches for
// dead-letter topics, then produces. Rejected partitions are not written
// and answer INVALID_RECORD with the reason.
func (c *conn) produceDeadLetters(req *kmsg.ProduceRequest) (*kmsg.ProduceResponse, error) {
	type tp struct {
		topic string
		part  int32
	}
	bad := map[tp]error{}
	for ti := range req.Topics {
		t := &req.Topics[ti]
		if !strings.HasSuffix(t.Topic, DeadLetterSuffix) {
			continue
		}
		for pi := range t.Partitions {
			p := &t.Partitions[pi]
			out, err := c.resolveRefs(p.Records)
			if err != nil {
				bad[tp{t.Topic, p.Partition}] = fmt.Errorf("produce to %s-%d: %w", t.Topic, p.Partition, err)
				p.Records = nil
				continue
			}
			if out != nil {
				p.Records = out
			}
		}
	}
	resp, failed := c.srv.produce(req)
	if len(bad) == 0 {
		return resp, failed
	}
	for ti := range resp.Topics {
		t := &resp.Topics[ti]
		for pi := range t.Partitions {
			p := &t.Partitions[pi]
			if err, ok := bad[tp{t.Topic, p.Partition}]; ok {
				p.ErrorCode, p.ErrorMessage = kerr.InvalidRecord.Code, strp(err.Error())
				c.srv.logf("connection %s: %v", c.peer, err)
				if failed == nil {
					failed = err
				}
			}
		}
	}
	return resp, failed
}

// resolveRefs returns records with every reference batch replaced by a
// batch of the originals, or nil when it holds no reference.
func (c *conn) resolveRefs(records []byte) ([]byte, error) {
	var out []byte
	found, refs := false, 0
	for off := 0; off < len(records); {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(records[off:]); err != nil {
			return nil, nil // not a batch the log accepts: Append says why
		}
		size := int(rb.Length) + recordbatch.LogOverhead
		if size <= 0 || off+size > len(records) {
			return nil, nil
		}
		batch := records[off : off+size]
		off += size
		recs, isRef, err := refRecords(rb)
		if err != nil {
			return nil, err
		}
		if !isRef {
			out = append(out, batch...)
			continue
		}
		found = true
		if refs += len(recs); refs > maxDeadLetterRefs {
			return nil, fmt.Errorf("%w: more than %d references in one request", errBadRef, maxDeadLetterRefs)
		}
		origs := make([]kmsg.Record, 0, len(recs))
		var stamps []int64
		for i, ref := range recs {
			o, ts, err := c.original(ref)
			if err != nil {
				return nil, fmt.Errorf("reference %d (%s): %w", i, ref, err)
			}
			origs, stamps = append(origs, o), append(stamps, ts)
		}
		out = appendBatch(out, origs, stamps)
	}
	if !found {
		return nil, nil
	}
	return out, nil
}

// refRecords returns a batch's references ("topic/partition/offset"), or
// isRef false when it holds none. A compressed batch holds none (the
// broker does not decompress produce requests); a batch that mixes
// references and plain records is rejected.
func refRecords(rb kmsg.RecordBatch) (refs []string, isRef bool, err error) {
	if rb.Attributes&0x07 != 0 {
		return nil, false, nil
	}
	raw := rb.Records
	plain := 0
	for i := int32(0); i < rb.NumRecords; i++ {
		r, rest, err := nextRecord(raw)
		if err != nil {
			return nil, false, nil // Append rejects it with the reason
		}
		raw = rest
		ref, ok := refOf(r)
		if !ok {
			plain++
			continue
		}
		if len(r.Value) > 0 {
			return nil, false, fmt.Errorf("%w: record %d has header %s and a %d-byte value; a reference carries no value", errBadRef, i, RefHeader, len(r.Value))
		}
		refs = append(refs, ref)
	}
	if len(refs) > 0 && plain > 0 {
		return nil, false, fmt.Errorf("%w: batch mixes %d references with %d plain records; send them in separate produce requests", errBadRef, len(refs), plain)
	}
	return refs, len(refs) > 0, nil
}

func refOf(r kmsg.Record) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == RefHeader {
			return string(h.Value), true
		}
	}
	return "", false
}

// nextRecord decodes the record at the start of raw, bounded by its own
// length prefix (kmsg does not check that the fields fill it exactly).
func nextRecord(raw []byte) (kmsg.Record, []byte, error) {
	l, n := binary.Varint(raw)
	if n <= 0 || l < 0 || l > int64(len(raw)-n) {
		return kmsg.Record{}, nil, errors.New("record length out of range")
	}
	var r kmsg.Record
	if err := r.ReadFrom(raw[:n+int(l)]); err != nil {
		return kmsg.Record{}, nil, err
	}
	return r, raw[n+int(l):], nil
}

// parseRef splits "topic/partition/offset" (the topic may hold no '/').
func parseRef(ref string) (topic string, part int32, offset int64, err error) {
	f := strings.Split(ref, "/")
	if len(f) != 3 {
		return "", 0, 0, fmt.Errorf("%w: header %s is %q; write topic/partition/offset", errBadRef, RefHeader, ref)
	}
	p, err1 := strconv.ParseInt(f[1], 10, 32)
	o, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || p < 0 || o < 0 {
		return "", 0, 0, fmt.Errorf("%w: header %s is %q; partition and offset must be non-negative integers", errBadRef, RefHeader, ref)
	}
	if err := log.ValidateTopic(f[0]); err != nil {
		return "", 0, 0, fmt.Errorf("%w: %v", errBadRef, err)
	}
	return f[0], int32(p), o, nil
}

// original reads the referenced record and its timestamp from the log.
func (c *conn) original(ref string) (kmsg.Record, int64, error) {
	topic, p, offset, err := parseRef(ref)
	if err != nil {
		return kmsg.Record{}, 0, err
	}
	part, err := c.srv.store.Partition(topic, p)
	if err != nil {
		return kmsg.Record{}, 0, fmt.Errorf("%w: %v", errBadRef, err)
	}
	if start, end := part.StartOffset(), part.EndOffset(); offset < start || offset >= end {
		return kmsg.Record{}, 0, fmt.Errorf("%w: offset %d of %s-%d is outside the log [%d, %d)", errBadRef, offset, topic, p, start, end)
	}
	rr, err := part.Read(offset, 1)
	if err != nil {
		return kmsg.Record{}, 0, fmt.Errorf("%w: %v", errBadRef, err)
	}
	defer rr.Release()
	if len(rr.Slices) == 0 {
		return kmsg.Record{}, 0, fmt.Errorf("%w: offset %d of %s-%d: nothing stored", errBadRef, offset, topic, p)
	}
	b, err := c.viewBatch(rr.Slices[0])
	if err != nil {
		return kmsg.Record{}, 0, err
	}
	return recordAt(b, offset)
}

// viewBatch returns the first batch of sl through the connection's path
// when it sees bytes, else with pread.
func (c *conn) viewBatch(sl log.Slice) ([]byte, error) {
	h := make([]byte, recordbatch.HeaderSize)
	if v, ok := c.path.(transfer.Viewer); ok {
		b, err := v.View(transfer.Span{Fd: int(sl.File.Fd()), Off: sl.Pos, Len: sl.Len})
		if err != nil {
			return nil, fmt.Errorf("read the original from %s: %w", sl.File.Name(), err)
		}
		size := recordbatch.Header(b).Size()
		if size > int64(len(b)) || size < recordbatch.HeaderSize {
			return nil, fmt.Errorf("batch at %d of %s claims %d bytes", sl.Pos, sl.File.Name(), size)
		}
		return b[:size], nil
	}
	if _, err := sl.File.ReadAt(h, sl.Pos); err != nil {
		return nil, fmt.Errorf("read the original's batch header from %s: %w", sl.File.Name(), err)
	}
	size := recordbatch.Header(h).Size()
	if size > sl.Len || size < recordbatch.HeaderSize {
		return nil, fmt.Errorf("batch at %d of %s claims %d bytes", sl.Pos, sl.File.Name(), size)
	}
	b := make([]byte, size)
	if _, err := sl.File.ReadAt(b, sl.Pos); err != nil {
		return nil, fmt.Errorf("read the original's batch from %s: %w", sl.File.Name(), err)
	}
	return b, nil
}

// recordAt decodes the record at offset from its batch, with its timestamp.
func recordAt(batch []byte, offset int64) (kmsg.Record, int64, error) {
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(batch); err != nil {
		return kmsg.Record{}, 0, fmt.Errorf("decode the original's batch: %w", err)
	}
	if rb.Attributes&0x07 != 0 {
		return kmsg.Record{}, 0, fmt.Errorf("%w: offset %d is in a compressed batch (codec %d); dead letters by reference need uncompressed originals", errBadRef, offset, rb.Attributes&0x07)
	}
	raw := rb.Records
	for i := int32(0); i < rb.NumRecords; i++ {
		r, rest, err := nextRecord(raw)
		if err != nil {
			return kmsg.Record{}, 0, fmt.Errorf("decode the original's record %d: %w", i, err)
		}
		raw = rest
		if rb.FirstOffset+int64(r.OffsetDelta) != offset {
			continue
		}
		ts := rb.FirstTimestamp + r.TimestampDelta64
		if rb.Attributes&0x08 != 0 { // LogAppendTime
			ts = rb.MaxTimestamp
		}
		// The fields point into the path's view, which the next read
		// reuses: this is the one copy of the original's content.
		r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
		r.Headers = slices.Clone(r.Headers)
		for j := range r.Headers {
			r.Headers[j].Value = bytes.Clone(r.Headers[j].Value)
		}
		return r, ts, nil
	}
	return kmsg.Record{}, 0, fmt.Errorf("%w: offset %d is not in the batch that should hold it", errBadRef, offset)
}

// appendBatch appends one uncompressed batch holding recs, whose keys,
// values and headers stay as they were, stamped with their timestamps.
func appendBatch(dst []byte, recs []kmsg.Record, stamps []int64) []byte {
	base, maxTs := stamps[0], stamps[0]
	for _, ts := range stamps {
		base, maxTs = min(base, ts), max(maxTs, ts)
	}
	var body []byte
	for i, r := range recs {
		r.OffsetDelta, r.TimestampDelta, r.TimestampDelta64 = int32(i), 0, stamps[i]-base
		r.Length = 0
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		body = r.AppendTo(body)
	}
	rb := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(len(recs) - 1), FirstTimestamp: base, MaxTimestamp: maxTs,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(recs)), Records: body}
	rb.Length = int32(recordbatch.HeaderSize - recordbatch.LogOverhead + len(body))
	start := len(dst)
	dst = rb.AppendTo(dst)
	b := dst[start:]
	binary.BigEndian.PutUint32(b[recordbatch.PosCRC:], crc32.Checksum(b[recordbatch.PosAttributes:], crc32.MakeTable(crc32.Castagnoli)))
	return dst
}
