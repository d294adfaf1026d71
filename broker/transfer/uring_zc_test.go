package transfer

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUringZCStackedNotifications: 4096 SEND_ZCs of 4 KiB on one socket.
// Linux 6.10+ stacks their notifications, so most arrive only once the
// sends pause (logged); Close must still collect every one, each saying
// the kernel copied (loopback), without a scan per notification (a
// 256 MiB bench run had 65536 pending).
func TestUringZCStackedNotifications(t *testing.T) {
	skipNoUring(t, "uring-zc")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 16 << 20
	f := writeTempFile(t, t.TempDir(), "seg.log", n, 7)
	rcv := newReceiver(t)
	sock := dialBlocking(t, rcv.ln.Addr())
	p := newUringZCPath(Options{Chunk: 4096})
	if _, err := p.Send(sock, []Part{{Span: Span{Fd: int(f.Fd()), Len: n}}}); err != nil {
		t.Fatal(err)
	}
	early := p.Ledger().ZCNotes
	pending := len(p.pending)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	l := p.Ledger()
	unix.Close(sock)
	if res := rcv.wait(t); res.n != n {
		t.Fatalf("receiver got %d bytes, want %d", res.n, n)
	}
	t.Logf("%d sends: %d notifications by the end of Send (%d pending), %d after Close", l.ZCSends, early, pending, l.ZCNotes)
	if l.ZCSends != n/4096 || l.ZCNotes != l.ZCSends || l.ZCCopiedByte != n {
		t.Errorf("sends %d, notifications %d, copied bytes %d; want %d, %d, %d", l.ZCSends, l.ZCNotes, l.ZCCopiedByte, n/4096, n/4096, n)
	}
}
