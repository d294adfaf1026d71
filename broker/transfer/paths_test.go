package transfer

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var testChunks = []int{4 << 10, 64 << 10, 1 << 20}

// receiver accepts one connection on 127.0.0.1 and hashes everything it
// reads until EOF.
type receiver struct {
	ln   net.Listener
	done chan recvResult
}

type recvResult struct {
	sum [32]byte
	n   int64
	err error
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.1: %v", err)
	}
	r := &receiver{ln: ln, done: make(chan recvResult, 1)}
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			r.done <- recvResult{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.CopyBuffer(h, c, make([]byte, 1<<20))
		var res recvResult
		copy(res.sum[:], h.Sum(nil))
		res.n, res.err = n, err
		r.done <- res
	}()
	return r
}

// dialBlocking returns a connected, blocking TCP socket fd.
func dialBlocking(t *testing.T, addr net.Addr) int {
	t.Helper()
	ta := addr.(*net.TCPAddr)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		t.Fatalf("connect %v: %v", addr, err)
	}
	return fd
}

func (r *receiver) wait(t *testing.T) recvResult {
	t.Helper()
	select {
	case res := <-r.done:
		if res.err != nil {
			t.Fatalf("receiver: %v", res.err)
		}
		return res
	case <-time.After(60 * time.Second):
		t.Fatalf("receiver: no EOF within 60s")
	}
	return recvResult{}
}

// writeTempFile writes n pseudo-random bytes to a new file in dir.
func writeTempFile(t testing.TB, dir, name string, n int, seed uint64) *os.File {
	t.Helper()
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// expected hashes what parts should deliver, reading spans with ReadAt.
func expected(t *testing.T, files map[int]*os.File, sends [][]Part) ([32]byte, int64) {
	t.Helper()
	h := sha256.New()
	var n int64
	for _, parts := range sends {
		for _, p := range parts {
			if len(p.Bytes) > 0 {
				h.Write(p.Bytes)
				n += int64(len(p.Bytes))
				continue
			}
			b := make([]byte, p.Span.Len)
			if _, err := files[p.Span.Fd].ReadAt(b, p.Span.Off); err != nil {
				t.Fatalf("read back span %+v: %v", p.Span, err)
			}
			h.Write(b)
			n += p.Span.Len
		}
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, n
}

// TestPathsHash sends framing and spans across two files (a segment
// boundary), then spans of a file that grows between and during Sends, and
// compares the receiver's sha256 with the bytes on disk.
func TestPathsHash(t *testing.T) {
	for _, name := range Names() {
		for _, chunk := range testChunks {
			t.Run(fmt.Sprintf("%s/%d", name, chunk), func(t *testing.T) {
				skipNoUring(t, name)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				dir := t.TempDir()
				f1 := writeTempFile(t, dir, "00.log", 3<<20+123, 1)
				f2 := writeTempFile(t, dir, "01.log", 2<<20+7, 2)
				f3 := writeTempFile(t, dir, "02.log", 1<<20+5, 3) // grows
				files := map[int]*os.File{int(f1.Fd()): f1, int(f2.Fd()): f2, int(f3.Fd()): f3}
				sp := func(f *os.File, off, n int64) Part { return Part{Span: Span{Fd: int(f.Fd()), Off: off, Len: n}} }

				p, err := New(name, Options{Chunk: chunk})
				if err != nil {
					t.Fatal(err)
				}
				rcv := newReceiver(t)
				sock := dialBlocking(t, rcv.ln.Addr())
				var sends [][]Part
				send := func(parts []Part) {
					t.Helper()
					var want int64
					for _, q := range parts {
						want += int64(len(q.Bytes)) + q.Span.Len
					}
					n, err := p.Send(sock, parts)
					if err != nil {
						t.Fatalf("Send: %v", err)
					}
					if n != want {
						t.Fatalf("Send returned %d bytes, want %d", n, want)
					}
					sends = append(sends, parts)
				}
				// A fetch spanning a segment boundary, with framing.
				send([]Part{{Bytes: []byte("hdr-0123")}, {Bytes: []byte("x")}, sp(f1, 1000, 3<<20+123-1000),
					{Bytes: []byte("mid")}, sp(f2, 0, 2<<20+7), {Bytes: []byte("tail")}})
				// The active segment: read, grow, read the new bytes.
				send([]Part{sp(f3, 0, 1<<20+5)})
				grow := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
				growDone := make(chan error, 1)
				if _, err := f3.Write(grow[:300<<10]); err != nil {
					t.Fatal(err)
				}
				go func() { // keeps appending while the next Sends run
					for i := 0; i < 8; i++ {
						if _, err := f3.WriteAt(grow, int64(1<<20+5+300<<10+i*len(grow))); err != nil {
							growDone <- err
							return
						}
					}
					growDone <- nil
				}()
				send([]Part{sp(f3, 1<<20+5, 300<<10)})
				send([]Part{sp(f3, 100, 4096), sp(f1, 0, 17)})
				if err := <-growDone; err != nil {
					t.Fatal(err)
				}
				send([]Part{sp(f3, 1<<20+5+300<<10, int64(8*len(grow)))})
				if err := p.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				unix.Close(sock)
				res := rcv.wait(t)
				wantSum, wantN := expected(t, files, sends)
				if res.n != wantN || res.sum != wantSum {
					t.Fatalf("receiver got %d bytes sha256 %x, want %d bytes %x", res.n, res.sum[:8], wantN, wantSum[:8])
				}
				l := p.Ledger()
				if int64(l.BytesSent) != wantN {
					t.Errorf("ledger BytesSent %d, want %d", l.BytesSent, wantN)
				}
				if name == "zerocopy" || name == "uring-zc" {
					note := map[string]string{"zerocopy": ZerocopyCopiedNote, "uring-zc": UringZCCopiedNote}[name]
					if l.ZCBytes != l.SpanBytes || l.ZCNotes == 0 {
						t.Errorf("zerocopy ledger: ZCBytes %d SpanBytes %d notes %d", l.ZCBytes, l.SpanBytes, l.ZCNotes)
					}
					// Loopback: the kernel copies every zerocopy send.
					if l.ZCCopiedByte != l.ZCBytes {
						t.Errorf("zerocopy on loopback: copied %d of %d bytes, want all (kernel copies on loopback)", l.ZCCopiedByte, l.ZCBytes)
					}
					if !slices.Contains(l.Notes, note) {
						t.Errorf("zerocopy ledger notes %q do not say the kernel copied", l.Notes)
					}
				}
			})
		}
	}
}

func TestNewUnknown(t *testing.T) {
	_, err := New("carrier-pigeon", Options{})
	if err == nil || !strings.Contains(err.Error(), "sendfile") {
		t.Fatalf("New(unknown) error %v, want one listing the valid paths", err)
	}
	if _, err := New("read", Options{Chunk: MaxChunk + 1}); err == nil {
		t.Fatal("New with an oversized chunk: no error")
	}
}

// TestCork: a multi-chunk response is corked for its duration and the socket is left uncorked (so the tail is pushed); NoCork
// and one-chunk responses make no setsockopt calls.
func TestCork(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f := writeTempFile(t, t.TempDir(), "c.log", 1<<20, 5)
	for _, tc := range []struct {
		noCork bool
		len    int64
		want   uint64
	}{{false, 1 << 20, 2}, {true, 1 << 20, 0}, {false, 4096, 0}} {
		rcv := newReceiver(t)
		sock := dialBlocking(t, rcv.ln.Addr())
		p, err := New("read", Options{Chunk: 64 << 10, NoCork: tc.noCork})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Send(sock, []Part{{Span: Span{Fd: int(f.Fd()), Len: tc.len}}}); err != nil {
			t.Fatal(err)
		}
		if got := p.Ledger().Calls["setsockopt"]; got != tc.want {
			t.Errorf("NoCork %v, %d bytes: %d setsockopt calls, want %d", tc.noCork, tc.len, got, tc.want)
		}
		if v, err := unix.GetsockoptInt(sock, unix.IPPROTO_TCP, unix.TCP_CORK); err != nil || v != 0 {
			t.Errorf("after Send TCP_CORK = %d (%v), want 0", v, err)
		}
		p.Close()
		unix.Close(sock)
		if res := rcv.wait(t); res.n != tc.len {
			t.Errorf("receiver got %d bytes, want %d", res.n, tc.len)
		}
	}
}
