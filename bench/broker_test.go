package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/kafka"
	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/kfetch"
	"golang.org/x/sys/unix"
)

// testBroker is a kafka server over a log of small segments with nbytes of
// records in topic "bench", one listener per path.
type testBroker struct {
	store *log.Store
	part  *log.Partition
	srv   *kafka.Server
	reg   *transfer.Registry
	addrs map[string]string
	table *crc32.Table
	end   int64
}

func newTestBroker(t *testing.T, segBytes, retention, nbytes int64) *testBroker {
	t.Helper()
	lc := log.DefaultConfig()
	lc.SegmentBytes, lc.RetentionBytes, lc.Fsync = segBytes, retention, log.FsyncNever
	lc.RetentionCheck = time.Hour // the tests call Retain themselves
	store, err := log.Open(t.TempDir(), lc)
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBroker{store: store, table: crc32.MakeTable(crc32.Castagnoli), addrs: map[string]string{}, reg: transfer.NewRegistry()}
	t.Cleanup(func() { store.Close() })
	part, end, _, err := produce(store, Config{Size: nbytes, RecordSize: DefaultRecordSize}, tb.table)
	if err != nil {
		t.Fatal(err)
	}
	tb.part, tb.end = part, end
	kc := kafka.DefaultConfig()
	kc.Listeners = nil
	for _, p := range transfer.Names() {
		kc.Listeners = append(kc.Listeners, kafka.Listener{Addr: "127.0.0.1:0", Path: p})
	}
	kc.Registry = tb.reg
	kc.AutoCreateTopics = false
	tb.srv, err = kafka.NewServer(store, kc)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tb.srv.Shutdown(ctx); err != nil {
			t.Errorf("broker shutdown: %v", err)
		}
	})
	for _, a := range tb.srv.Addrs() {
		tb.addrs[a.Path] = a.Addr
	}
	return tb
}

func (tb *testBroker) client(t *testing.T, path string, maxBytes int32) *kfetch.Client {
	t.Helper()
	fd, err := dialBlocking(tb.addrs[path], 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	c, err := kfetch.New(fd, fetchConfig(maxBytes, true))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// consumeAll fetches [from, end) with CRC checks: the broker is healthy.
func (tb *testBroker) consumeAll(t *testing.T, path string, from int64) {
	t.Helper()
	c := tb.client(t, path, 4<<20)
	for off := from; off < tb.end; {
		res, err := c.Fetch(off)
		if err != nil {
			t.Fatalf("%s: fetch at %d after the fault: %v", path, off, err)
		}
		if res.ErrCode != 0 || res.Next <= off {
			t.Fatalf("%s: fetch at %d after the fault: error code %d, next %d", path, off, res.ErrCode, res.Next)
		}
		off = res.Next
	}
}

// waitConns waits until the registry holds n connections.
func (tb *testBroker) waitConns(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if len(tb.reg.List()) == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("registry holds %d connections after 5s, want %d (a data thread did not exit)", len(tb.reg.List()), n)
}

// TestBrokerClientDisconnectsMidFetch: a consumer that resets its
// connection in the middle of a large response leaves the data thread to
// exit cleanly and the broker serving others.
func TestBrokerClientDisconnectsMidFetch(t *testing.T) {
	tb := newTestBroker(t, 4<<20, -1, 24<<20)
	for _, path := range transfer.Names() {
		t.Run(path, func(t *testing.T) {
			fd, err := dialBlocking(tb.addrs[path], 0)
			if err != nil {
				t.Fatal(err)
			}
			c, err := kfetch.New(fd, fetchConfig(64<<20, false))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Send(0); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64<<10)
			if _, err := unix.Read(fd, buf); err != nil {
				t.Fatal(err)
			}
			// RST instead of FIN: the server's next send fails at once.
			if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
			tb.waitConns(t, 0)
			tb.consumeAll(t, path, 0)
		})
	}
}

// TestBrokerOffsetOutOfRange: fetches before the log start (after
// retention) and past the end get OFFSET_OUT_OF_RANGE (1), and the same
// connection then fetches normally.
func TestBrokerOffsetOutOfRange(t *testing.T) {
	tb := newTestBroker(t, 1<<20, 4<<20, 12<<20)
	n, err := tb.part.Retain(time.Now())
	if err != nil || n == 0 {
		t.Fatalf("retention deleted %d segments (%v), want some", n, err)
	}
	start := tb.part.StartOffset()
	if start == 0 {
		t.Fatal("log start still 0 after retention")
	}
	for _, path := range transfer.Names() {
		t.Run(path, func(t *testing.T) {
			c := tb.client(t, path, 4<<20)
			for _, off := range []int64{0, start - 1, tb.end + 1, tb.end + 1000} {
				res, err := c.Fetch(off)
				if err != nil {
					t.Fatalf("fetch at %d: %v", off, err)
				}
				if res.ErrCode != 1 || res.RecordBytes != 0 {
					t.Fatalf("fetch at %d (log is [%d, %d]): error code %d with %d record bytes, want 1 (OFFSET_OUT_OF_RANGE) and none", off, start, tb.end, res.ErrCode, res.RecordBytes)
				}
			}
			res, err := c.Fetch(start)
			if err != nil || res.ErrCode != 0 || res.Next <= start {
				t.Fatalf("fetch at log start %d on the same connection: code %d next %d err %v", start, res.ErrCode, res.Next, err)
			}
			tb.consumeAll(t, path, start)
		})
	}
}

// TestBrokerSegmentDeletedWhileServed: retention deletes the segments a
// large response is being sent from; the response still arrives whole
// (every batch CRC checks) and the broker keeps serving.
func TestBrokerSegmentDeletedWhileServed(t *testing.T) {
	for _, path := range transfer.Names() {
		t.Run(path, func(t *testing.T) {
			tb := newTestBroker(t, 1<<20, 2<<20, 20<<20)
			c := tb.client(t, path, 16<<20)
			if err := c.Send(0); err != nil {
				t.Fatal(err)
			}
			// The response (16 MiB) exceeds the socket buffers: the data
			// thread is blocked mid-send while retention runs.
			time.Sleep(50 * time.Millisecond)
			n, err := tb.part.Retain(time.Now())
			if err != nil || n == 0 {
				t.Fatalf("retention deleted %d segments (%v), want some", n, err)
			}
			res, err := c.Response(0)
			if err != nil {
				t.Fatalf("response whose segments were deleted mid-send: %v", err)
			}
			if res.ErrCode != 0 || res.RecordBytes < 8<<20 {
				t.Fatalf("response: code %d, %d record bytes, want 0 and the full fetch", res.ErrCode, res.RecordBytes)
			}
			start := tb.part.StartOffset()
			if start == 0 {
				t.Fatal("log start still 0 after retention")
			}
			res, err = c.Fetch(0)
			if err != nil || res.ErrCode != 1 {
				t.Fatalf("fetch at deleted offset 0: code %d err %v, want 1", res.ErrCode, err)
			}
			tb.consumeAll(t, path, start)
		})
	}
}

// logHash hashes the log's batches [0, end) as stored in the segments.
func logHash(t *testing.T, part *log.Partition, end int64) ([32]byte, int64) {
	t.Helper()
	h := sha256.New()
	var n int64
	for off := int64(0); off < end; {
		res, err := part.Read(off, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range res.Slices {
			if _, err := io.Copy(h, io.NewSectionReader(s.File, s.Pos, s.Len)); err != nil {
				t.Fatal(err)
			}
			n += s.Len
		}
		next, err := nextOffset(res.Slices[len(res.Slices)-1])
		res.Release()
		if err != nil {
			t.Fatal(err)
		}
		off = next
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n
}

// TestBrokerHash consumes the whole log through the broker on every path
// and chunk size while a producer keeps appending (so the active segment
// grows and rolls under the consumer, and fetches span segment
// boundaries), and compares the sha256 of the batches received with the
// log's own bytes.
func TestBrokerHash(t *testing.T) {
	for _, chunk := range []int{4 << 10, 64 << 10, 1 << 20} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			lc := log.DefaultConfig()
			lc.SegmentBytes, lc.Fsync = 2<<20, log.FsyncNever
			store, err := log.Open(t.TempDir(), lc)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			table := crc32.MakeTable(crc32.Castagnoli)
			part, _, _, err := produce(store, Config{Size: 6 << 20, RecordSize: 1000}, table)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := startBroker(store, Config{Paths: transfer.Names(), Chunk: chunk})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.stop()
			// Keep producing while the consumers read: 6 MiB more.
			bb := newBatchBuilder(table, 16, 1000)
			prodDone := make(chan error, 1)
			go func() {
				for i := 0; i < 400; i++ {
					if _, err := part.Append(bb.next(time.Now().UnixMilli())); err != nil {
						prodDone <- err
						return
					}
					if i%10 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				prodDone <- nil
			}()
			type got struct {
				path string
				sum  [32]byte
				n    int64
				err  error
			}
			results := make(chan got, len(transfer.Names()))
			endc := make(chan int64)
			for _, path := range transfer.Names() {
				go func() {
					g := got{path: path}
					defer func() { results <- g }()
					addr, _ := srv.addr(path)
					fd, err := dialBlocking(addr, 0)
					if err != nil {
						g.err = err
						return
					}
					defer unix.Close(fd)
					h := sha256.New()
					cfg := fetchConfig(3<<20, true)
					cfg.Tap = h
					c, err := kfetch.New(fd, cfg)
					if err != nil {
						g.err = err
						return
					}
					end := int64(-1)
					for off := int64(0); end < 0 || off < end; {
						if end < 0 && off >= part.EndOffset() {
							select {
							case end = <-endc:
							case <-time.After(time.Millisecond):
							}
							continue
						}
						res, err := c.Fetch(off)
						if err != nil || res.ErrCode != 0 {
							g.err = fmt.Errorf("fetch at %d: code %d: %v", off, res.ErrCode, err)
							return
						}
						off = max(off, res.Next)
					}
					copy(g.sum[:], h.Sum(nil))
					g.n = c.RecordBytes
				}()
			}
			if err := <-prodDone; err != nil {
				t.Fatal(err)
			}
			end := part.EndOffset()
			for range transfer.Names() {
				endc <- end
			}
			want, wantN := logHash(t, part, end)
			if st := part.Stats(); st.Segments < 4 {
				t.Fatalf("log has %d segments, want several (segment boundaries)", st.Segments)
			}
			for range transfer.Names() {
				g := <-results
				if g.err != nil {
					t.Errorf("%s chunk %d: %v", g.path, chunk, g.err)
					continue
				}
				if g.sum != want || g.n != wantN {
					t.Errorf("%s chunk %d: consumed %d bytes sha256 %x, log holds %d bytes %x", g.path, chunk, g.n, g.sum[:8], wantN, want[:8])
				}
			}
		})
	}
}
