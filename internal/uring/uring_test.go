//go:build linux

package uring

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newOrSkip returns a ring or skips, saying why io_uring is unusable.
func newOrSkip(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries, 0)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("io_uring unavailable here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// waitAll enters until n completions have been reaped and returns them.
func waitAll(t *testing.T, r *Ring, n int) []CQE {
	t.Helper()
	var out []CQE
	for len(out) < n {
		if _, err := r.Enter(1); err != nil && err != unix.EINTR {
			t.Fatalf("io_uring_enter: %v", err)
		}
		for {
			c, ok := r.Peek()
			if !ok {
				break
			}
			out = append(out, c)
			r.Seen()
		}
	}
	return out
}

func TestABISizes(t *testing.T) {
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"io_uring_sqe", unsafe.Sizeof(SQE{}), 64},
		{"io_uring_cqe", unsafe.Sizeof(CQE{}), 16},
		{"io_uring_params", unsafe.Sizeof(params{}), 120},
		{"sqe.user_data offset", unsafe.Offsetof(SQE{}.UserData), 32},
		{"sqe.splice_fd_in offset", unsafe.Offsetof(SQE{}.SpliceFdIn), 44},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, uapi says %d", c.what, c.got, c.want)
		}
	}
}

// TestBatchNop: several SQEs go in one io_uring_enter, completions come
// back with their user data, and a full SQ says so instead of overwriting.
func TestBatchNop(t *testing.T) {
	r := newOrSkip(t, 4)
	if r.Mmaps() < 2 || r.Mmaps() > 3 {
		t.Errorf("Mmaps() = %d, want 2 or 3", r.Mmaps())
	}
	n := int(r.SQEntries())
	for i := 0; i < n; i++ {
		sqe := r.Get()
		if sqe == nil {
			t.Fatalf("Get returned nil after %d of %d SQEs", i, n)
		}
		sqe.PrepNop(uint64(100 + i))
	}
	if r.Get() != nil {
		t.Fatal("Get on a full SQ returned an SQE")
	}
	if got, err := r.Enter(uint32(n)); err != nil || got != n {
		t.Fatalf("Enter submitted %d (%v), want %d in one call", got, err, n)
	}
	seen := map[uint64]bool{}
	for _, c := range waitAll(t, r, n) {
		if c.Res != 0 {
			t.Errorf("NOP %d: res %d", c.UserData, c.Res)
		}
		seen[c.UserData] = true
	}
	for i := 0; i < n; i++ {
		if !seen[uint64(100+i)] {
			t.Errorf("no completion for user data %d", 100+i)
		}
	}
	if r.Queued() != 0 || r.Get() == nil {
		t.Error("SQ not free again after the batch completed")
	}
}

func tempFile(t *testing.T, b []byte) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestLinkedReadSendSplice: READ -> SEND and SPLICE file->pipe -> SPLICE
// pipe->socket, linked in one chain and one io_uring_enter, deliver the
// file's bytes in order.
func TestLinkedReadSendSplice(t *testing.T) {
	r := newOrSkip(t, 8)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	f := tempFile(t, data)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[1])
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := make([]byte, 8192)
	half := len(data) / 2
	// Link all but the last: each starts after the previous completes.
	s := r.Get()
	s.PrepRead(int(f.Fd()), buf, 0, 1)
	s.Flags |= SQEIOLink
	s = r.Get()
	s.PrepSend(sp[0], buf, unix.MSG_WAITALL, 2)
	s.Flags |= SQEIOLink
	s = r.Get()
	s.PrepSplice(int(f.Fd()), int64(half), p[1], -1, half, 0, 3)
	s.Flags |= SQEIOLink
	r.Get().PrepSplice(p[0], -1, sp[0], -1, half, 0, 4)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(data))
		n, _ := io.ReadFull(os.NewFile(uintptr(sp[1]), "peer"), b)
		got <- b[:n]
	}()
	if n, err := r.Enter(4); err != nil || n != 4 {
		t.Fatalf("Enter: %d, %v", n, err)
	}
	for _, c := range waitAll(t, r, 4) {
		want := int32(len(buf))
		if c.Res != want {
			t.Errorf("op %d: res %d, want %d", c.UserData, c.Res, want)
		}
	}
	unix.Close(sp[0])
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("peer got %d bytes, not the file's %d in order", len(b), len(data))
	}
}

// TestSendZCNotif: a SEND_ZC on loopback TCP completes with the bytes and
// IORING_CQE_F_MORE, then a notification CQE that (loopback always copies)
// carries IORING_NOTIF_USAGE_ZC_COPIED.
func TestSendZCNotif(t *testing.T) {
	r := newOrSkip(t, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{7}, 64<<10)
	go io.Copy(io.Discard, peer)
	var cqes []CQE
	raw.Control(func(fd uintptr) {
		r.Get().PrepSendZC(int(fd), data, 0, 9)
		if _, err := r.Enter(1); err != nil {
			t.Fatalf("Enter: %v", err)
		}
		cqes = waitAll(t, r, 2)
	})
	if len(cqes) != 2 {
		t.Fatalf("%d CQEs, want a send and a notification", len(cqes))
	}
	send, notif := cqes[0], cqes[1]
	if send.Res == -int32(unix.EINVAL) {
		t.Skip("kernel without IORING_OP_SEND_ZC (needs 6.0)")
	}
	if send.Res != int32(len(data)) || send.Flags&CQEFMore == 0 || send.UserData != 9 {
		t.Errorf("send CQE %+v, want res %d with CQE_F_MORE", send, len(data))
	}
	if notif.Flags&CQEFNotif == 0 || notif.UserData != 9 {
		t.Errorf("second CQE %+v is not the send's notification", notif)
	}
	if uint32(notif.Res)&NotifUsageZCCopied == 0 {
		t.Errorf("loopback notification res %#x lacks ZC_COPIED (the kernel copies on loopback)", uint32(notif.Res))
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{OpRead: "READ", OpSendZC: "SEND_ZC", OpSplice: "SPLICE", Op(99): "OP_99"} {
		if op.String() != want {
			t.Errorf("Op(%d) = %q, want %q", op, op.String(), want)
		}
	}
}

// TestSetupError: each failure of io_uring_setup names what to do, and the
// "cannot be used here" ones wrap ErrUnavailable so callers skip the paths.
func TestSetupError(t *testing.T) {
	for _, c := range []struct {
		errno       unix.Errno
		unavailable bool
		says        string
	}{
		{unix.ENOSYS, true, "seccomp"},
		{unix.EPERM, true, "io_uring_setup"},
		{unix.ENOMEM, false, "ulimit -l"},
		{unix.EINVAL, false, "invalid argument"},
	} {
		err := setupError(c.errno)
		if errors.Is(err, ErrUnavailable) != c.unavailable || !bytes.Contains([]byte(err.Error()), []byte(c.says)) {
			t.Errorf("setupError(%v) = %v; want unavailable=%v and a message with %q", c.errno, err, c.unavailable, c.says)
		}
	}
}

// TestWaitTimeout: Wait returns ETIME when nothing completes in time, and
// a CQ size asked for is granted.
func TestWaitTimeout(t *testing.T) {
	r, err := New(4, 64)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("io_uring unavailable here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.CQEntries() != 64 {
		t.Errorf("CQEntries %d, asked for 64", r.CQEntries())
	}
	start := time.Now()
	if err := r.Wait(1, 20*time.Millisecond); err != unix.ETIME {
		t.Errorf("Wait on an idle ring: %v, want ETIME", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond || d > 2*time.Second {
		t.Errorf("Wait(20ms) took %v", d)
	}
	r.Get().PrepNop(1)
	if _, err := r.Enter(0); err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(1, time.Second); err != nil {
		t.Fatalf("Wait after a NOP: %v", err)
	}
	if c, ok := r.Peek(); !ok || c.UserData != 1 {
		t.Fatalf("no NOP completion after Wait: %+v %v", c, ok)
	}
}
