package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// offsetsTopic is where committed offsets are kept, in Kafka's own record
// format (OffsetCommitKey v1, OffsetCommitValue v3; a null value deletes),
// so `kcat -C -t __consumer_offsets` shows them as for Kafka. It has one
// partition (one broker, one coordinator) and is created on the first
// commit. Metadata lists it, marked internal as Kafka does: tools show
// the same picture as against Kafka, and clients already leave internal
// topics out of regex subscriptions. Clients may read it but not produce
// to it, create or delete it.
const offsetsTopic = "__consumer_offsets"

// internalTopic reports whether name is owned by the broker itself.
func internalTopic(name string) bool { return name == offsetsTopic }

// castagnoli is the CRC-32C table of record batches; built once, never written.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// offsetRecord is one commit (or, with del, deletion) to log.
type offsetRecord struct {
	tp  topicPartition
	c   committed
	del bool
}

// offsetsPartition returns the offsets log, creating the topic on first use.
func (c *coordinator) offsetsPartition() (*log.Partition, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.offsets != nil {
		return c.offsets, nil
	}
	p, err := c.store.Partition(offsetsTopic, 0)
	if errors.Is(err, log.ErrUnknownTopicOrPartition) {
		if err = c.store.CreateTopic(offsetsTopic, 1); err == nil || errors.Is(err, log.ErrTopicExists) {
			c.logf("created topic %s for committed offsets", offsetsTopic)
			p, err = c.store.Partition(offsetsTopic, 0)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("offsets log %s: %w", offsetsTopic, err)
	}
	p.KeepAll() // compacted by the coordinator, never cut by retention
	c.offsets = p
	return p, nil
}

// appendOffsets makes recs of group durable as one batch (as durable as
// the store's --fsync policy makes any append) before the caller applies
// them.
func (c *coordinator) appendOffsets(group string, recs []offsetRecord) error {
	p, err := c.offsetsPartition()
	if err != nil {
		return err
	}
	if _, err := p.Append(encodeOffsets(group, recs, time.Now().UnixMilli())); err != nil {
		return fmt.Errorf("append %d committed offsets of group %s to %s: %w", len(recs), group, offsetsTopic, err)
	}
	c.records.Add(int64(len(recs)))
	return nil
}

// encodeOffsets builds one uncompressed v2 record batch of recs.
func encodeOffsets(group string, recs []offsetRecord, nowMs int64) []byte {
	b := make([]byte, 61, 61+len(recs)*(64+len(group)))
	for i, r := range recs {
		key := kmsg.OffsetCommitKey{Version: 1, Group: group, Topic: r.tp.topic, Partition: r.tp.partition}
		var val []byte
		if !r.del {
			v := kmsg.NewOffsetCommitValue()
			v.Version, v.Offset, v.LeaderEpoch, v.Metadata, v.CommitTimestamp = 3, r.c.offset, r.c.leaderEpoch, r.c.metadata, nowMs
			val = v.AppendTo(nil)
		}
		body := []byte{0}                   // attributes
		body = binary.AppendVarint(body, 0) // timestamp delta
		body = binary.AppendVarint(body, int64(i))
		k := key.AppendTo(nil)
		body = binary.AppendVarint(body, int64(len(k)))
		body = append(body, k...)
		if val == nil {
			body = binary.AppendVarint(body, -1)
		} else {
			body = binary.AppendVarint(body, int64(len(val)))
			body = append(body, val...)
		}
		body = binary.AppendVarint(body, 0) // headers
		b = binary.AppendVarint(b, int64(len(body)))
		b = append(b, body...)
	}
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12)) // batch length
	b[16] = 2                                            // magic
	binary.BigEndian.PutUint32(b[23:], uint32(len(recs)-1))
	binary.BigEndian.PutUint64(b[27:], uint64(nowMs))
	binary.BigEndian.PutUint64(b[35:], uint64(nowMs))
	binary.BigEndian.PutUint64(b[43:], ^uint64(0)) // producer id -1
	binary.BigEndian.PutUint16(b[51:], 0xffff)     // producer epoch -1
	binary.BigEndian.PutUint32(b[53:], 0xffffffff) // base sequence -1
	binary.BigEndian.PutUint32(b[57:], uint32(len(recs)))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// load replays the offsets log into the groups, then opens the
// coordinator for requests.
func (c *coordinator) load() {
	defer close(c.loaded)
	start := time.Now()
	p, err := c.store.Partition(offsetsTopic, 0)
	if err != nil {
		return // no commit was ever made
	}
	p.KeepAll()
	n, err := c.replay(p)
	c.records.Store(int64(n))
	if err != nil {
		c.logf("replay %s: %v (offsets committed after that point are lost; the log itself is intact)", offsetsTopic, err)
	}
	c.logf("replayed %d offset commits of %d groups from %s in %v", n, len(c.snapshot()), offsetsTopic, time.Since(start).Round(time.Millisecond))
}

// replay applies every record of p in offset order.
func (c *coordinator) replay(p *log.Partition) (int, error) {
	n := 0
	for off, end := p.StartOffset(), p.EndOffset(); off < end; {
		res, err := p.Read(off, 1<<20)
		if err != nil {
			return n, err
		}
		next := off
		for _, s := range res.Slices {
			buf := make([]byte, s.Len)
			if _, err := s.File.ReadAt(buf, s.Pos); err != nil {
				res.Release()
				return n, fmt.Errorf("read %d bytes at %d: %w", s.Len, s.Pos, err)
			}
			last, m, err := c.replayBatches(buf)
			n += m
			if err != nil {
				res.Release()
				return n, fmt.Errorf("batch at offset %d: %w", next, err)
			}
			next = last + 1
		}
		res.Release()
		if next <= off {
			return n, fmt.Errorf("no progress at offset %d", off)
		}
		off = next
	}
	return n, nil
}

// replayBatches applies the records of whole batches in b and returns the
// last offset they hold.
func (c *coordinator) replayBatches(b []byte) (last int64, n int, err error) {
	for len(b) >= 61 {
		size := 12 + int(int32(binary.BigEndian.Uint32(b[8:])))
		if size < 61 || size > len(b) {
			return last, n, fmt.Errorf("batch of %d bytes in %d", size, len(b))
		}
		batch := b[:size]
		b = b[size:]
		last = int64(binary.BigEndian.Uint64(batch)) + int64(binary.BigEndian.Uint32(batch[23:]))
		if batch[22]&0x07 != 0 {
			return last, n, errors.New("compressed batch: the broker never writes one here; was the topic produced to by hand?")
		}
		m, err := c.replayRecords(batch[61:], int(binary.BigEndian.Uint32(batch[57:])))
		n += m
		if err != nil {
			return last, n, err
		}
	}
	return last, n, nil
}

func (c *coordinator) replayRecords(b []byte, count int) (int, error) {
	n := 0
	for i := 0; i < count; i++ {
		size, w := binary.Varint(b)
		if w <= 0 || size < 0 || size > int64(len(b)-w) {
			return n, fmt.Errorf("record %d: bad length", i)
		}
		rec := b[w : w+int(size)]
		b = b[w+int(size):]
		key, val, ok := recordKeyValue(rec)
		if !ok {
			return n, fmt.Errorf("record %d: malformed", i)
		}
		var k kmsg.OffsetCommitKey
		if len(key) < 2 || binary.BigEndian.Uint16(key) > 1 || k.ReadFrom(key) != nil {
			continue // group metadata (key v2) or foreign: not ours to apply
		}
		tp := topicPartition{k.Topic, k.Partition}
		g := c.group(k.Group, true)
		g.mu.Lock()
		if val == nil {
			delete(g.offsets, tp)
		} else {
			var v kmsg.OffsetCommitValue
			if v.ReadFrom(val) == nil {
				g.offsets[tp] = committed{offset: v.Offset, leaderEpoch: v.LeaderEpoch, metadata: v.Metadata}
			}
		}
		c.forget(g)
		g.mu.Unlock()
		n++
	}
	return n, nil
}

// recordKeyValue splits a v2 record body into its key and value (nil for
// a null value).
func recordKeyValue(rec []byte) (key, val []byte, ok bool) {
	if len(rec) < 1 {
		return nil, nil, false
	}
	rec = rec[1:] // attributes
	for range 2 { // timestamp delta, offset delta
		_, w := binary.Varint(rec)
		if w <= 0 {
			return nil, nil, false
		}
		rec = rec[w:]
	}
	field := func() ([]byte, bool) {
		l, w := binary.Varint(rec)
		if w <= 0 || l < -1 || l > int64(len(rec)-w) {
			return nil, false
		}
		rec = rec[w:]
		if l < 0 {
			return nil, true
		}
		f := rec[:l]
		rec = rec[l:]
		return f, true
	}
	if key, ok = field(); !ok {
		return nil, nil, false
	}
	val, ok = field()
	return key, val, ok
}
