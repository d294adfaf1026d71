// Package kproduce is a lean blocking Kafka Produce client (v7, acks 1)
// for one connected socket, used from one locked OS thread so that every
// syscall it makes is the producer's own (as internal/kfetch is for
// Fetch). bench and the demo send dead letters with it.
package kproduce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/copyscope/copyscope/internal/recordbatch"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// maxResponse bounds a Produce response's size prefix.
const maxResponse = 1 << 20

// clientID is the request header's client id.
const clientID = "kproduce"

// Producer writes Produce requests to fd and reads their answers.
type Producer struct {
	fd   int
	corr int32
	buf  []byte
	// BytesSent counts the request bytes written.
	BytesSent uint64
}

// New wraps fd, a connected blocking TCP socket.
func New(fd int) *Producer { return &Producer{fd: fd} }

// Send produces recs to partition 0 of topic as one uncompressed batch
// and waits for the answer; a partition error is returned with the
// broker's message.
func (p *Producer) Send(topic string, recs []kmsg.Record) error {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 7, 1, 30_000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = Batch(recs)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	p.corr++
	b := p.buf[:0]
	b = append(b, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, 0) // Produce
	b = binary.BigEndian.AppendUint16(b, 7)
	b = binary.BigEndian.AppendUint32(b, uint32(p.corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	p.buf = b
	if err := writeFull(p.fd, b); err != nil {
		return err
	}
	p.BytesSent += uint64(len(b))
	return p.answer()
}

// answer reads one Produce response and fails on its error code.
func (p *Producer) answer() error {
	var size [4]byte
	if err := readFull(p.fd, size[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > maxResponse {
		return fmt.Errorf("produce response size %d out of range [4, %d]", n, maxResponse)
	}
	body := make([]byte, n)
	if err := readFull(p.fd, body); err != nil {
		return err
	}
	if c := int32(binary.BigEndian.Uint32(body)); c != p.corr {
		return fmt.Errorf("produce response correlation id %d, want %d", c, p.corr)
	}
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 7
	if err := resp.ReadFrom(body[4:]); err != nil {
		return fmt.Errorf("decode produce response: %w", err)
	}
	for _, t := range resp.Topics {
		for _, pr := range t.Partitions {
			if err := kerr.ErrorForCode(pr.ErrorCode); err != nil {
				msg := ""
				if pr.ErrorMessage != nil {
					msg = ": " + *pr.ErrorMessage
				}
				return fmt.Errorf("produce to %s-%d: %w%s", t.Topic, pr.Partition, err, msg)
			}
		}
	}
	return nil
}

// Batch is one uncompressed v2 batch of recs (their offset deltas and
// lengths are set here), stamped now.
func Batch(recs []kmsg.Record) []byte {
	var body []byte
	for i := range recs {
		r := &recs[i]
		r.OffsetDelta, r.Length = int32(i), 0
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		body = r.AppendTo(body)
	}
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(len(recs) - 1), FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(recs)), Records: body}
	rb.Length = int32(recordbatch.HeaderSize - recordbatch.LogOverhead + len(body))
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[recordbatch.PosCRC:], crc32.Checksum(b[recordbatch.PosAttributes:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write produce request: %w", err)
		}
		b = b[n:]
	}
	return nil
}

func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read produce response: %w", err)
		}
		if n == 0 {
			return errors.New("broker closed the connection mid-response")
		}
		b = b[n:]
	}
	return nil
}
