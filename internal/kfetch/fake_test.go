package kfetch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/recordbatch"
)

// testBatch is a v2 record batch of n records at base with a valid CRC-32C;
// the records are opaque filler (the client and the log read headers only).
func testBatch(base int64, n int, body int) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(base))
	b = binary.BigEndian.AppendUint32(b, 0) // length, patched
	b = binary.BigEndian.AppendUint32(b, 0) // partition leader epoch
	b = append(b, 2)                        // magic
	b = binary.BigEndian.AppendUint32(b, 0) // crc, patched
	b = binary.BigEndian.AppendUint16(b, 0) // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(n-1))
	b = binary.BigEndian.AppendUint64(b, 0)          // base timestamp
	b = binary.BigEndian.AppendUint64(b, 0)          // max timestamp
	b = binary.BigEndian.AppendUint64(b, ^uint64(0)) // producer id -1
	b = binary.BigEndian.AppendUint16(b, 0xffff)     // producer epoch -1
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // base sequence -1
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for i := 0; i < body; i++ {
		b = append(b, byte(base)+byte(i*7))
	}
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-recordbatch.LogOverhead))
	binary.BigEndian.PutUint32(b[recordbatch.PosCRC:], crc32.Checksum(b[recordbatch.PosAttributes:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// part is one partition of a hand-framed response.
type part struct {
	errCode  int16
	hw       int64
	logStart int64
	records  []byte
}

// frame hand-encodes a Fetch response of version v for correlation id corr.
func frame(v int16, corr int32, topErr int16, parts ...part) []byte {
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint32(b, 0) // throttle
	if v >= 7 {
		b = binary.BigEndian.AppendUint16(b, uint16(topErr))
		b = binary.BigEndian.AppendUint32(b, 0) // session id
	}
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, 't')
	b = binary.BigEndian.AppendUint32(b, uint32(len(parts)))
	for i, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(i))
		b = binary.BigEndian.AppendUint16(b, uint16(p.errCode))
		b = binary.BigEndian.AppendUint64(b, uint64(p.hw))
		b = binary.BigEndian.AppendUint64(b, uint64(p.hw)) // last stable
		if v >= 5 {
			b = binary.BigEndian.AppendUint64(b, uint64(p.logStart))
		}
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // aborted: null
		if v >= 11 {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff) // preferred replica -1
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(p.records)))
		b = append(b, p.records...)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// fakeServer accepts one connection on loopback, reads one request frame
// and calls serve with it and the connection; it returns the address.
func fakeServer(t *testing.T, serve func(req []byte, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		req := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		serve(req, c)
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// corrOf is the correlation id of a request frame (after its size).
func corrOf(req []byte) int32 { return int32(binary.BigEndian.Uint32(req[4:])) }

// dialNew connects a plain socket (SO_RCVLOWAT rcvlowat when > 0) and wraps
// it with New, as the bench does.
func dialNew(t *testing.T, addr string, rcvlowat int, cfg Config) *Client {
	t.Helper()
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rcvlowat > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, rcvlowat); err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	c, err := New(fd, cfg)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mode is one way a caller reads.
type mode struct {
	name string
	cfg  Config
	dial func(t *testing.T, addr string, cfg Config) *Client
}

// testModes are the two ways the callers read: the bench's 1 MiB streaming
// buffer over a socket made elsewhere, and the demo's response-sized buffer
// on a socket the client dials.
func testModes() []mode {
	return []mode{
		{"bench", Config{Topic: "t", Version: 4, ClientID: "bench", MaxBytes: 64 << 20, MaxWait: 500 * time.Millisecond, BufSize: 1 << 20, Verify: true},
			func(t *testing.T, addr string, cfg Config) *Client { return dialNew(t, addr, 0, cfg) }},
		{"demo", Config{Topic: "t", Version: 11, ClientID: "copyscope-demo", MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond},
			func(t *testing.T, addr string, cfg Config) *Client {
				t.Helper()
				c, err := Dial(addr, 0, cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}},
	}
}

// TestRequestMatchesKmsg: the hand-encoded requests are byte for byte what
// franz-go encodes for the same fields, in both versions spoken.
func TestRequestMatchesKmsg(t *testing.T) {
	for _, m := range testModes() {
		t.Run(m.name, func(t *testing.T) {
			c, err := newClient(-1, m.cfg)
			if err != nil {
				t.Fatal(err)
			}
			c.cfg.Partition = 3
			got := append([]byte(nil), c.request(12345)...)
			req := kmsg.NewPtrFetchRequest()
			req.Version = m.cfg.Version
			req.ReplicaID = -1
			req.MaxWaitMillis = int32(m.cfg.MaxWait / time.Millisecond)
			req.MinBytes = 1
			req.MaxBytes = m.cfg.MaxBytes
			req.SessionEpoch = -1
			tp := kmsg.NewFetchRequestTopic()
			tp.Topic = m.cfg.Topic
			p := kmsg.NewFetchRequestTopicPartition()
			p.Partition = 3
			p.FetchOffset = 12345
			p.LogStartOffset = -1
			p.PartitionMaxBytes = m.cfg.MaxBytes
			p.CurrentLeaderEpoch = -1
			tp.Partitions = append(tp.Partitions, p)
			req.Topics = append(req.Topics, tp)
			want := kmsg.NewRequestFormatter(kmsg.FormatterClientID(m.cfg.ClientID)).AppendRequest(nil, req, 1)
			if !bytes.Equal(got, want) {
				t.Fatalf("Fetch v%d request\n got %x\nwant %x", m.cfg.Version, got, want)
			}
		})
	}
}

// TestResponses: hand-framed responses, good and bad, in both modes. Every
// bad one is an error that says what was wrong.
func TestResponses(t *testing.T) {
	b1, b2, b3 := testBatch(10, 5, 100), testBatch(15, 10, 3000), testBatch(25, 2, 200)
	badCRC := append([]byte(nil), b2...)
	badCRC[len(badCRC)-1] ^= 0xff
	badMagic := append([]byte(nil), b1...)
	badMagic[16] = 1
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	type want struct {
		err     string // substring of the error; "" for success
		next    int64
		records int64
	}
	cases := []struct {
		name string
		// resp builds the bytes sent for request corr at version v.
		resp  func(v int16, corr int32) []byte
		want  want
		demo  *want // when the demo mode (no verify) differs
		tearC bool  // close the connection after sending
	}{
		{name: "two batches", resp: func(v int16, corr int32) []byte {
			return frame(v, corr, 0, part{hw: 30, records: cat(b1, b2)})
		}, want: want{next: 25, records: int64(len(b1) + len(b2))}},
		{name: "partial last batch skipped", resp: func(v int16, corr int32) []byte {
			return frame(v, corr, 0, part{hw: 30, records: cat(b1, b2, b3[:len(b3)-50])})
		}, want: want{next: 25, records: int64(len(b1) + len(b2) + len(b3) - 50)}},
		{name: "tail shorter than a header", resp: func(v int16, corr int32) []byte {
			return frame(v, corr, 0, part{hw: 30, records: cat(b1, b3[:40])})
		}, want: want{next: 15, records: int64(len(b1) + 40)}},
		{name: "no records", resp: func(v int16, corr int32) []byte {
			return frame(v, corr, 0, part{errCode: 1, hw: 30, logStart: 3})
		}, want: want{next: 7}},
		{name: "bad CRC", resp: func(v int16, corr int32) []byte {
			return frame(v, corr, 0, part{hw: 30, records: cat(b1, badCRC)})
		}, want: want{err: "CRC-32C"}, demo: &want{next: 25, records: int64(len(b1) + len(badCRC))}},
		{name: "magic 1", resp: func(v int16, corr int32) []byte {
			return frame(v, corr, 0, part{hw: 30, records: badMagic})
		}, want: want{err: "magic 1"}},
		{name: "garbage size", resp: func(v int16, corr int32) []byte {
			return []byte("HTTP/1.1 400 Bad Request\r\n\r\n")
		}, want: want{err: "out of range"}},
		{name: "size below a correlation id", resp: func(v int16, corr int32) []byte {
			return []byte{0, 0, 0, 2, 0, 0}
		}, want: want{err: "out of range"}},
		{name: "truncated", tearC: true, resp: func(v int16, corr int32) []byte {
			f := frame(v, corr, 0, part{hw: 30, records: cat(b1, b2)})
			return f[:len(f)-1000]
		}, want: want{err: "closed the connection mid-response"}},
		{name: "fields overrun the size", resp: func(v int16, corr int32) []byte {
			f := frame(v, corr, 0, part{hw: 30})
			f = f[:len(f)-8] // cut into the partition header, size patched
			binary.BigEndian.PutUint32(f, uint32(len(f)-4))
			return f
		}, want: want{err: "shorter than its fields"}},
		{name: "records overrun the size", resp: func(v int16, corr int32) []byte {
			f := frame(v, corr, 0, part{hw: 30, records: b1})
			f = f[:len(f)-10]
			binary.BigEndian.PutUint32(f, uint32(len(f)-4))
			return f
		}, want: want{err: "overrun its size"}},
		{name: "wrong correlation id", resp: func(v int16, corr int32) []byte {
			return frame(v, corr+1, 0, part{hw: 30})
		}, want: want{err: "correlation id"}},
		{name: "two partitions", resp: func(v int16, corr int32) []byte {
			return frame(v, corr, 0, part{hw: 30}, part{hw: 30})
		}, want: want{err: "holds 2 partitions"}},
		{name: "no partition", resp: func(v int16, corr int32) []byte {
			return frame(v, corr, 0)
		}, want: want{err: "holds 0 partitions"}},
	}
	for _, m := range testModes() {
		for _, tc := range cases {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				addr := fakeServer(t, func(req []byte, conn net.Conn) {
					conn.Write(tc.resp(m.cfg.Version, corrOf(req)))
					if !tc.tearC {
						io.Copy(io.Discard, conn) // until the client closes
					}
				})
				c := m.dial(t, addr, m.cfg)
				res, err := c.Fetch(7)
				c.Shutdown() // let the server go
				w := tc.want
				if m.name == "demo" && tc.demo != nil {
					w = *tc.demo
				}
				if w.err != "" {
					if err == nil || !strings.Contains(err.Error(), w.err) {
						t.Fatalf("error %v, want one saying %q", err, w.err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if res.Next != w.next || res.RecordBytes != w.records || res.HighWatermark != 30 {
					t.Fatalf("next %d, %d record bytes, hw %d; want %d, %d, 30", res.Next, res.RecordBytes, res.HighWatermark, w.next, w.records)
				}
				if m.cfg.Version >= 5 && tc.name == "no records" && (res.LogStart != 3 || res.ErrCode != 1) {
					t.Fatalf("log start %d, error code %d; want 3, 1", res.LogStart, res.ErrCode)
				}
			})
		}
	}
}

// TestTopLevelError: a v11 response's top-level error code fails the fetch
// with Kafka's name for it.
func TestTopLevelError(t *testing.T) {
	m := testModes()[1]
	addr := fakeServer(t, func(req []byte, conn net.Conn) {
		conn.Write(frame(11, corrOf(req), kerr.FetchSessionIDNotFound.Code))
	})
	c := m.dial(t, addr, m.cfg)
	if _, err := c.Fetch(0); !errors.Is(err, kerr.FetchSessionIDNotFound) {
		t.Fatalf("error %v, want FETCH_SESSION_ID_NOT_FOUND", err)
	}
}

// TestReadPattern pins the syscalls each mode makes for a response that is
// queued whole before the client reads: the probes count them. The bench
// reads a small response in one read (two with SO_RCVLOWAT: the size prefix
// alone); the demo reads the size prefix, then the rest.
func TestReadPattern(t *testing.T) {
	records := bytes.Join([][]byte{testBatch(0, 5, 4000), testBatch(5, 5, 4000)}, nil)
	for _, tc := range []struct {
		name  string
		m     int
		lowat int
		reads uint64
	}{
		{"bench", 0, 0, 1},
		{"bench rcvlowat", 0, 4096, 2},
		{"demo", 1, 0, 2},
		{"demo rcvlowat", 1, 4096, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testModes()[tc.m]
			queued := make(chan struct{})
			addr := fakeServer(t, func(req []byte, conn net.Conn) {
				conn.Write(frame(m.cfg.Version, corrOf(req), 0, part{hw: 10, records: records}))
				close(queued)
				io.Copy(io.Discard, conn)
			})
			var c *Client
			if m.name == "bench" {
				c = dialNew(t, addr, tc.lowat, m.cfg)
			} else {
				var err error
				if c, err = Dial(addr, tc.lowat, m.cfg); err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			if err := c.Send(0); err != nil {
				t.Fatal(err)
			}
			<-queued
			time.Sleep(20 * time.Millisecond) // loopback delivery
			res, err := c.Response(0)
			c.Shutdown()
			if err != nil {
				t.Fatal(err)
			}
			if res.Next != 10 || res.Bytes != int64(len(records))+int64(len(frame(m.cfg.Version, 0, 0, part{}))) {
				t.Fatalf("next %d, %d bytes", res.Next, res.Bytes)
			}
			if c.Reads != tc.reads || c.Writes != 1 || c.Fetches != 1 {
				t.Fatalf("%d reads, %d writes, %d fetches; want %d, 1, 1", c.Reads, c.Writes, c.Fetches, tc.reads)
			}
			if m.name == "demo" && len(c.buf) != int(res.Bytes-4) {
				t.Fatalf("demo buffer %d bytes, want the response's %d", len(c.buf), res.Bytes-4)
			}
		})
	}
}

// TestRcvLowatTail: with SO_RCVLOWAT far above a response's tail, and the
// tail arriving after the client is already asleep in read, the client
// still finishes: it drops the mark to 1 for the tail (a reader is woken
// only once the mark's worth of bytes is queued).
func TestRcvLowatTail(t *testing.T) {
	const lowat = 64 << 10
	records := bytes.Join([][]byte{testBatch(0, 1, 3*lowat), testBatch(1, 1, 1000)}, nil)
	for _, m := range testModes() {
		t.Run(m.name, func(t *testing.T) {
			addr := fakeServer(t, func(req []byte, conn net.Conn) {
				f := frame(m.cfg.Version, corrOf(req), 0, part{hw: 2, records: records})
				cut := len(f) - 2000 // the tail: far below the mark
				conn.Write(f[:cut])
				time.Sleep(100 * time.Millisecond)
				conn.Write(f[cut:])
				io.Copy(io.Discard, conn) // silent, open: no FIN wakes the reader
			})
			var c *Client
			if m.name == "bench" {
				c = dialNew(t, addr, lowat, m.cfg)
			} else {
				var err error
				if c, err = Dial(addr, lowat, m.cfg); err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			done := make(chan error, 1)
			go func() {
				res, err := c.Fetch(0)
				if err == nil && res.Next != 2 {
					err = errors.New("fetch did not read both batches")
				}
				done <- err
			}()
			select {
			case err := <-done:
				c.Shutdown()
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				c.Shutdown()
				<-done
				t.Fatal("client still asleep in read 10s after the response's tail arrived: SO_RCVLOWAT held above the tail")
			}
		})
	}
}
