package kafka

import (
	"encoding/binary"

	"github.com/copyscope/copyscope/broker/transfer"
)

// fetchPartition is one partition's answer in a Fetch response. Its record
// bytes stay in the segment files: spans name them, in order.
type fetchPartition struct {
	partition int32
	errCode   int16
	hw        int64 // high watermark
	lso       int64 // last stable offset
	logStart  int64
	spans     []transfer.Span
	body      []byte // record bytes made by the broker (a filter), sent instead of spans
}

// fetchTopic is one topic's answer in a Fetch response.
type fetchTopic struct {
	name       string
	partitions []fetchPartition
}

// fetchFrame is an encoded Fetch response: framing bytes interleaved with
// file spans, ready for a transfer path.
type fetchFrame struct {
	buf   []byte // all framing bytes, in order
	marks []mark // where spans go between framing bytes
	size  int64  // total frame size including the 4-byte size prefix
}

// mark places the spans of one partition after buf[:at].
type mark struct {
	at    int
	spans []transfer.Span
	body  []byte
}

// encodeFetch writes a Fetch response (versions 4 to 12) for h around the
// record bytes, which it never reads: their lengths are known from the
// spans, so the size prefix is computed up front. buf is reused storage.
func encodeFetch(buf []byte, h header, errCode int16, sessionID int32, topics []fetchTopic) fetchFrame {
	v, flex := h.version, h.flexible
	b := buf[:0]
	b = append(b, 0, 0, 0, 0) // size, patched below
	b = binary.BigEndian.AppendUint32(b, uint32(h.corrID))
	if flex {
		b = append(b, 0) // response header tags
	}
	b = binary.BigEndian.AppendUint32(b, 0) // throttle_time_ms (v1+)
	if v >= 7 {
		b = binary.BigEndian.AppendUint16(b, uint16(errCode))
		b = binary.BigEndian.AppendUint32(b, uint32(sessionID))
	}
	var marks []mark
	var spanBytes int64
	b = appendArrayLen(b, len(topics), flex)
	for _, t := range topics {
		b = appendString(b, t.name, flex)
		b = appendArrayLen(b, len(t.partitions), flex)
		for _, p := range t.partitions {
			b = binary.BigEndian.AppendUint32(b, uint32(p.partition))
			b = binary.BigEndian.AppendUint16(b, uint16(p.errCode))
			b = binary.BigEndian.AppendUint64(b, uint64(p.hw))
			b = binary.BigEndian.AppendUint64(b, uint64(p.lso)) // v4+
			if v >= 5 {
				b = binary.BigEndian.AppendUint64(b, uint64(p.logStart))
			}
			// aborted_transactions: null (no transactions are ever aborted)
			if flex {
				b = append(b, 0)
			} else {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			}
			if v >= 11 {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff) // preferred_read_replica -1
			}
			n := int64(len(p.body))
			for _, s := range p.spans {
				n += s.Len
			}
			if flex {
				b = binary.AppendUvarint(b, uint64(n)+1)
			} else {
				b = binary.BigEndian.AppendUint32(b, uint32(n))
			}
			if n > 0 {
				marks = append(marks, mark{at: len(b), spans: p.spans, body: p.body})
				spanBytes += n
			}
			if flex {
				b = append(b, 0) // partition tags
			}
		}
		if flex {
			b = append(b, 0) // topic tags
		}
	}
	if flex {
		b = append(b, 0) // response tags
	}
	size := int64(len(b)) + spanBytes
	binary.BigEndian.PutUint32(b, uint32(size-4))
	return fetchFrame{buf: b, marks: marks, size: size}
}

// parts lays the frame out for transfer.Path.Send, appending to dst.
func (f fetchFrame) parts(dst []transfer.Part) []transfer.Part {
	prev := 0
	for _, m := range f.marks {
		if m.at > prev {
			dst = append(dst, transfer.Part{Bytes: f.buf[prev:m.at]})
		}
		if len(m.body) > 0 {
			dst = append(dst, transfer.Part{Bytes: m.body})
		}
		for _, s := range m.spans {
			if s.Len > 0 {
				dst = append(dst, transfer.Part{Span: s})
			}
		}
		prev = m.at
	}
	if prev < len(f.buf) {
		dst = append(dst, transfer.Part{Bytes: f.buf[prev:]})
	}
	return dst
}

func appendArrayLen(b []byte, n int, flex bool) []byte {
	if flex {
		return binary.AppendUvarint(b, uint64(n)+1)
	}
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func appendString(b []byte, s string, flex bool) []byte {
	if flex {
		b = binary.AppendUvarint(b, uint64(len(s))+1)
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	}
	return append(b, s...)
}
