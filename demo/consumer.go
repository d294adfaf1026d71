package demo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// fetchVersion is the Fetch version the consumers speak: the newest
// non-flexible one, so the response header is fixed-size.
const fetchVersion = 11

// fetcher is a lean Kafka Fetch client on one blocking TCP socket, used
// from one locked OS thread: every syscall it makes is the consumer's own
// (no netpoller, no goroutine hand-off), so the probes see the consumer's
// real wake-ups.
type fetcher struct {
	fd     int
	lowat  int    // requested SO_RCVLOWAT (0: kernel default)
	curLow int    // SO_RCVLOWAT now set on the socket
	local  string // local address, which the broker sees as the peer
	topic  string
	corrID int32
	req    []byte
	buf    []byte
	fmt    *kmsg.RequestFormatter
}

// dialFetcher connects a blocking socket to addr; rcvlowat > 0 sets
// SO_RCVLOWAT so reads wake up only when that many bytes are queued.
func dialFetcher(addr, topic string, rcvlowat int) (*fetcher, error) {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("consumer: resolve broker address %q: %w", addr, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("consumer: socket: %w", err)
	}
	if rcvlowat > 0 {
		// A fixed receive buffer well above the low-water mark: left to
		// itself, setting SO_RCVLOWAT clamps the receive window to the mark,
		// and a window just under it never lets the mark be reached.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 2*rcvlowat); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("consumer: set SO_RCVBUF %d for SO_RCVLOWAT %d: %w", 2*rcvlowat, rcvlowat, err)
		}
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("consumer: connect to broker %s: %w (is the broker listening?)", addr, err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	lsa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("consumer: getsockname: %w", err)
	}
	l4, ok := lsa.(*unix.SockaddrInet4)
	if !ok {
		unix.Close(fd)
		return nil, fmt.Errorf("consumer: unexpected local address type %T", lsa)
	}
	local := net.JoinHostPort(net.IP(l4.Addr[:]).String(), fmt.Sprint(l4.Port))
	return &fetcher{fd: fd, lowat: rcvlowat, curLow: 1, local: local, topic: topic, fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID("copyscope-demo"))}, nil
}

func (f *fetcher) close() error { return unix.Close(f.fd) }

// fetchResult is what one Fetch told the consumer.
type fetchResult struct {
	bytes    int   // response size on the wire
	next     int64 // offset after the last complete batch (== offset when none)
	hw       int64 // high watermark
	logStart int64 // log start offset
	errCode  int16
}

// fetch asks for partition 0 of the topic from offset, at most maxBytes of
// records, and reads the whole response.
func (f *fetcher) fetch(offset int64, maxBytes int32, maxWait time.Duration) (fetchResult, error) {
	req := kmsg.NewPtrFetchRequest()
	req.Version = fetchVersion
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(maxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = maxBytes
	req.SessionEpoch = -1
	t := kmsg.NewFetchRequestTopic()
	t.Topic = f.topic
	p := kmsg.NewFetchRequestTopicPartition()
	p.Partition = 0
	p.FetchOffset = offset
	p.LogStartOffset = -1
	p.PartitionMaxBytes = maxBytes
	p.CurrentLeaderEpoch = -1
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	f.corrID++
	f.req = f.fmt.AppendRequest(f.req[:0], req, f.corrID)
	if err := writeFull(f.fd, f.req); err != nil {
		return fetchResult{}, fmt.Errorf("consumer: send Fetch: %w", err)
	}
	var hdr [4]byte
	if err := f.read(hdr[:]); err != nil {
		return fetchResult{}, fmt.Errorf("consumer: read Fetch response size: %w", err)
	}
	size := int(binary.BigEndian.Uint32(hdr[:]))
	if size < 4 || size > 256<<20 {
		return fetchResult{}, fmt.Errorf("consumer: Fetch response size %d out of range", size)
	}
	if cap(f.buf) < size {
		f.buf = make([]byte, size)
	}
	body := f.buf[:size]
	if err := f.read(body); err != nil {
		return fetchResult{}, fmt.Errorf("consumer: read Fetch response (%d bytes): %w", size, err)
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != f.corrID {
		return fetchResult{}, fmt.Errorf("consumer: Fetch response correlation id %d, want %d", got, f.corrID)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = fetchVersion
	if err := resp.UnsafeReadFrom(body[4:]); err != nil {
		return fetchResult{}, fmt.Errorf("consumer: decode Fetch response: %w", err)
	}
	res := fetchResult{bytes: size + 4, next: offset}
	if resp.ErrorCode != 0 {
		return res, fmt.Errorf("consumer: Fetch failed: %w", kerr.ErrorForCode(resp.ErrorCode))
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return res, errors.New("consumer: Fetch response without exactly one partition")
	}
	rp := resp.Topics[0].Partitions[0]
	res.hw, res.logStart, res.errCode = rp.HighWatermark, rp.LogStartOffset, rp.ErrorCode
	res.next = nextOffset(rp.RecordBatches, offset)
	return res, nil
}

// nextOffset walks record batches and returns the offset after the last
// complete one, or from when there is none.
func nextOffset(b []byte, from int64) int64 {
	next := from
	for len(b) >= 61 {
		base := int64(binary.BigEndian.Uint64(b))
		blen := int(int32(binary.BigEndian.Uint32(b[8:])))
		if blen < 49 || 12+blen > len(b) {
			break
		}
		lastDelta := int64(int32(binary.BigEndian.Uint32(b[23:])))
		next = base + lastDelta + 1
		b = b[12+blen:]
	}
	return next
}

// read fills b. With a SO_RCVLOWAT asked for, the mark applies only while
// at least twice that much of the response is still to come, and is 1 for
// the tail: a read that already copied part of the queue sleeps until the
// mark's worth of new bytes arrives, so a mark above the rest of a response
// would never wake it (measured: such a consumer hangs).
func (f *fetcher) read(b []byte) error {
	for len(b) > 0 {
		if f.lowat > 0 {
			want := 1
			if len(b) >= 2*f.lowat {
				want = f.lowat
			}
			if want != f.curLow {
				if err := unix.SetsockoptInt(f.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, want); err != nil {
					return fmt.Errorf("set SO_RCVLOWAT %d: %w", want, err)
				}
				f.curLow = want
			}
		}
		n, err := unix.Read(f.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("connection closed by the broker")
		}
		b = b[n:]
	}
	return nil
}

func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
