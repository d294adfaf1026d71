package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"golang.org/x/sys/unix"
)

// fetchVersion is the Fetch version the lean client speaks: v4 has
// max_bytes and isolation_level but no sessions or flexible encoding.
const fetchVersion = 4

// recvBufSize is the consumer's read buffer, as xfer.c's receiver.
const recvBufSize = 1 << 20

// errOffsetOutOfRange is Kafka error 1.
var errOffsetOutOfRange = errors.New("OFFSET_OUT_OF_RANGE (error 1)")

// fetchClient is a lean Kafka Fetch consumer over one blocking socket: it
// writes Fetch v4 requests and parses responses streaming through a 1 MiB
// buffer, never holding a whole response. With verify it checks every
// batch's CRC-32C.
type fetchClient struct {
	fd        int
	topic     string
	partition int32
	maxBytes  int32
	verify    bool
	table     *crc32.Table

	// tap, if set, receives every complete batch's bytes in order (tests
	// hash them against the log).
	tap io.Writer

	buf    []byte
	r, w   int   // unread bytes are buf[r:w]
	unread int64 // bytes of the current response still in the socket, -1 unknown
	lowat  int   // SO_RCVLOWAT configured on the socket (0: kernel default)
	low    bool  // SO_RCVLOWAT is currently lowered to 1 (a response's tail)
	corrID int32
	req    []byte

	// Totals.
	Reads       uint64 // read(2) calls on the socket
	Writes      uint64 // write(2) calls on the socket
	Fetches     uint64
	RecordBytes int64 // record-set bytes received
	Batches     uint64
}

func newFetchClient(fd int, topic string, partition int32, maxBytes int32, verify bool, table *crc32.Table) *fetchClient {
	c := &fetchClient{fd: fd, topic: topic, partition: partition, maxBytes: maxBytes, verify: verify, table: table, buf: make([]byte, recvBufSize), unread: -1}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT); err == nil && v > 1 {
		c.lowat = v
	}
	return c
}

// request encodes a Fetch v4 request for offset.
func (c *fetchClient) request(offset int64) []byte {
	c.corrID++
	b := c.req[:0]
	b = append(b, 0, 0, 0, 0)               // size
	b = binary.BigEndian.AppendUint16(b, 1) // api key Fetch
	b = binary.BigEndian.AppendUint16(b, fetchVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(c.corrID))
	b = binary.BigEndian.AppendUint16(b, 5)
	b = append(b, "bench"...)                        // client id
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // replica id -1
	b = binary.BigEndian.AppendUint32(b, 500)        // max wait ms
	b = binary.BigEndian.AppendUint32(b, 1)          // min bytes
	b = binary.BigEndian.AppendUint32(b, uint32(c.maxBytes))
	b = append(b, 0)                        // isolation: read uncommitted
	b = binary.BigEndian.AppendUint32(b, 1) // one topic
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.topic)))
	b = append(b, c.topic...)
	b = binary.BigEndian.AppendUint32(b, 1) // one partition
	b = binary.BigEndian.AppendUint32(b, uint32(c.partition))
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, uint32(c.maxBytes))
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.req = b
	return b
}

// fill reads more bytes from the socket, compacting first.
func (c *fetchClient) fill() error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.buf) {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	// Never ask for more than the current response holds: with
	// SO_RCVLOWAT the kernel waits for min(lowat, asked) bytes, so asking
	// past the response's end would wait for bytes that never come.
	want := len(c.buf) - c.w
	switch {
	case c.unread >= 0:
		want = int(min(int64(want), c.unread))
	case c.lowat > 0:
		want = min(want, 4-(c.w-c.r)) // just the size prefix
	}
	// Near a response's end the kernel may never queue lowat bytes (once
	// the sender stops, the receive window need not hold them and nothing
	// wakes the reader): drop SO_RCVLOWAT to 1 for the last 4 x lowat
	// bytes and restore it for the next response.
	if c.lowat > 0 {
		tail := c.unread < 0 || c.unread < 4*int64(c.lowat)
		if tail != c.low {
			v := c.lowat
			if tail {
				v = 1
			}
			if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, v); err != nil {
				return fmt.Errorf("set SO_RCVLOWAT %d on the consumer socket: %w", v, err)
			}
			c.low = tail
		}
	}
	if want <= 0 {
		return fmt.Errorf("fetch response: parser wants bytes past the response's end")
	}
	for {
		c.Reads++
		n, err := unix.Read(c.fd, c.buf[c.w:c.w+want])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read fetch response: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("broker closed the connection mid-response")
		}
		c.w += n
		if c.unread >= 0 {
			c.unread -= int64(n)
		}
		return nil
	}
}

// need makes n contiguous bytes available at buf[r:].
func (c *fetchClient) need(n int) ([]byte, error) {
	for c.w-c.r < n {
		if len(c.buf)-c.r < n {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	b := c.buf[c.r : c.r+n]
	c.r += n
	return b, nil
}

// stream passes the next n bytes to f in whatever pieces the buffer holds.
func (c *fetchClient) stream(n int64, f func([]byte)) error {
	for n > 0 {
		if c.r == c.w {
			if err := c.fill(); err != nil {
				return err
			}
		}
		k := min(int64(c.w-c.r), n)
		if f != nil {
			f(c.buf[c.r : c.r+int(k)])
		}
		c.r += int(k)
		n -= k
	}
	return nil
}

func (c *fetchClient) u16() (uint16, error) {
	b, err := c.need(2)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(b), nil
}

func (c *fetchClient) u32() (uint32, error) {
	b, err := c.need(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

func (c *fetchClient) u64() (uint64, error) {
	b, err := c.need(8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

// fetchResult is one partition's answer.
type fetchResult struct {
	errCode     int16
	hw          int64
	next        int64 // offset after the last complete batch, or the request offset
	recordBytes int64
}

// fetch sends one request for offset and reads the whole response.
func (c *fetchClient) fetch(offset int64) (fetchResult, error) {
	if err := c.send(offset); err != nil {
		return fetchResult{next: offset}, err
	}
	return c.response(offset)
}

// send writes a Fetch request for offset.
func (c *fetchClient) send(offset int64) error {
	req := c.request(offset)
	for len(req) > 0 {
		c.Writes++
		n, err := unix.Write(c.fd, req)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write fetch request: %w", err)
		}
		req = req[n:]
	}
	c.Fetches++
	return nil
}

// response reads the response to the request sent for offset.
func (c *fetchClient) response(offset int64) (fetchResult, error) {
	res := fetchResult{next: offset}
	c.unread = -1 // until the size prefix is in
	size, err := c.u32()
	if err != nil {
		return res, err
	}
	c.unread = int64(size) - int64(c.w-c.r)
	corr, err := c.u32()
	if err != nil {
		return res, err
	}
	if int32(corr) != c.corrID {
		return res, fmt.Errorf("fetch response correlation id %d, want %d", int32(corr), c.corrID)
	}
	left := int64(size) - 4
	// From here every read is accounted against left.
	take := func(n int) ([]byte, error) {
		left -= int64(n)
		if left < 0 {
			return nil, fmt.Errorf("fetch response shorter than its fields (size %d)", size)
		}
		return c.need(n)
	}
	u32 := func() (uint32, error) {
		b, err := take(4)
		if err != nil {
			return 0, err
		}
		return binary.BigEndian.Uint32(b), nil
	}
	if _, err := take(4); err != nil { // throttle_time_ms
		return res, err
	}
	ntopics, err := u32()
	if err != nil {
		return res, err
	}
	for t := uint32(0); t < ntopics; t++ {
		b, err := take(2)
		if err != nil {
			return res, err
		}
		if _, err := take(int(binary.BigEndian.Uint16(b))); err != nil {
			return res, err
		}
		nparts, err := u32()
		if err != nil {
			return res, err
		}
		for p := uint32(0); p < nparts; p++ {
			hdr, err := take(4 + 2 + 8 + 8)
			if err != nil {
				return res, err
			}
			res.errCode = int16(binary.BigEndian.Uint16(hdr[4:]))
			res.hw = int64(binary.BigEndian.Uint64(hdr[6:]))
			naborted, err := u32()
			if err != nil {
				return res, err
			}
			if int32(naborted) > 0 {
				if _, err := take(int(naborted) * 16); err != nil {
					return res, err
				}
			}
			rlen, err := u32()
			if err != nil {
				return res, err
			}
			if int32(rlen) <= 0 {
				continue
			}
			left -= int64(rlen)
			if left < 0 {
				return res, fmt.Errorf("fetch response records (%d bytes) overrun its size %d", rlen, size)
			}
			next, err := c.records(int64(rlen))
			if err != nil {
				return res, err
			}
			res.recordBytes += int64(rlen)
			if next > res.next {
				res.next = next
			}
		}
	}
	if left > 0 {
		if err := c.stream(left, nil); err != nil {
			return res, err
		}
	}
	c.RecordBytes += res.recordBytes
	return res, nil
}

// records walks a record set of n bytes batch by batch and returns the
// offset after the last complete batch. A trailing partial batch (the
// broker cut at max_bytes) is skipped, as Kafka clients do.
func (c *fetchClient) records(n int64) (int64, error) {
	var next int64 = -1
	for n > 0 {
		if n < batchHeaderSize {
			return next, c.stream(n, nil)
		}
		h, err := c.need(batchHeaderSize)
		if err != nil {
			return next, err
		}
		base := int64(binary.BigEndian.Uint64(h[0:]))
		blen := int64(int32(binary.BigEndian.Uint32(h[8:])))
		magic := h[16]
		if blen < batchHeaderSize-batchLogHeader {
			return next, fmt.Errorf("batch at offset %d: length %d is shorter than a header", base, blen)
		}
		total := batchLogHeader + blen
		if total > n {
			// Partial batch at the end of the response.
			return next, c.stream(n-batchHeaderSize, nil)
		}
		if magic != 2 {
			return next, fmt.Errorf("batch at offset %d: magic %d, this client reads v2 batches only", base, magic)
		}
		lastDelta := int64(int32(binary.BigEndian.Uint32(h[23:])))
		body := total - batchHeaderSize
		if c.tap != nil {
			c.tap.Write(h)
		}
		if c.verify {
			want := binary.BigEndian.Uint32(h[crcPos:])
			crc := crc32.Update(0, c.table, h[attrPos:])
			if err := c.stream(body, func(b []byte) {
				crc = crc32.Update(crc, c.table, b)
				if c.tap != nil {
					c.tap.Write(b)
				}
			}); err != nil {
				return next, err
			}
			if crc != want {
				return next, fmt.Errorf("batch at offset %d: CRC-32C %08x, header says %08x (corrupt record batch)", base, crc, want)
			}
		} else if err := c.stream(body, func(b []byte) {
			if c.tap != nil {
				c.tap.Write(b)
			}
		}); err != nil {
			return next, err
		}
		c.Batches++
		next = base + lastDelta + 1
		n -= total
	}
	return next, nil
}
