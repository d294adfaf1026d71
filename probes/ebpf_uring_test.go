//go:build linux && amd64

package probes

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/uring"
	"github.com/copyscope/copyscope/metrics"
)

// uringOrSkip opens the eBPF probe and skips unless io_uring and its
// programs are usable here.
func uringOrSkip(t *testing.T) Probe {
	t.Helper()
	p := openEBPFOrSkip(t)
	if err := uring.Available(); err != nil {
		t.Skipf("%v", err)
	}
	for _, n := range p.Notes() {
		if len(n) > 6 && n[:6] == "uring_" {
			t.Skipf("io_uring programs not attached: %s", n)
		}
	}
	return p
}

// do submits one operation and waits for its completion.
func do(r *uring.Ring, prep func(*uring.SQE)) (int32, error) {
	prep(r.Get())
	if _, err := r.Enter(1); err != nil {
		return 0, fmt.Errorf("io_uring_enter: %w", err)
	}
	c, ok := r.Peek()
	if !ok {
		return 0, errors.New("io_uring: no completion after io_uring_enter")
	}
	r.Seen()
	return c.Res, nil
}

// TestEBPFIOUring checks that io_uring reads, writes and sends, which are
// not syscalls, are counted by class and by opcode and attributed to the
// submitter.
func TestEBPFIOUring(t *testing.T) {
	p := uringOrSkip(t)
	const n, k = 16, 4096
	src := tempFile(t, n*k)
	dst := tempFile(t, 0)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitSock := drain(sp[1])
	r, err := uring.New(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before, after, _ := runLocked(t, p, func() error {
		buf := make([]byte, k)
		for i := 0; i < n; i++ {
			for _, op := range []func(*uring.SQE){
				func(s *uring.SQE) { s.PrepRead(int(src.Fd()), buf, int64(i*k), 0) },
				func(s *uring.SQE) { s.PrepWrite(int(dst.Fd()), buf, int64(i*k), 0) },
				func(s *uring.SQE) { s.PrepSend(sp[0], buf, 0, 0) },
			} {
				res, err := do(r, op)
				if err != nil {
					return err
				}
				if res != k {
					return fmt.Errorf("io_uring op: res %d, want %d", res, k)
				}
			}
		}
		return nil
	})
	unix.Close(sp[0])
	waitSock()
	unix.Close(sp[1])
	d := after.probe.Sub(before.probe)
	nk := uint64(n * k)
	for _, c := range []struct {
		what      string
		got, want uint64
	}{
		{"copied_to_user[file] (IORING_OP_READ)", d.CopiedToUser[metrics.ClassFile], nk},
		{"copied_from_user[file] (IORING_OP_WRITE)", d.CopiedFromUser[metrics.ClassFile], nk},
		{"copied_from_user[socket] (IORING_OP_SEND)", d.CopiedFromUser[metrics.ClassSocket], nk},
		{"delivered_bytes", d.DeliveredBytes, nk},
		{"io_uring_enter syscalls", d.SyscallsByName["io_uring_enter"], 3 * n},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	for _, op := range []string{"READ", "WRITE", "SEND"} {
		want := metrics.UringOp{Submitted: n, Completed: n, Bytes: nk}
		if got := d.UringOps[op]; got != want {
			t.Errorf("io_uring_ops[%s] = %+v, want %+v", op, got, want)
		}
	}
}

// uringTransfer sends frame + a size-byte span of a temp file over path
// to a loopback receiver, on the calling thread, and returns the ledger.
func uringTransfer(path string, size, chunk int, f *os.File) (transfer.Ledger, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return transfer.Ledger{}, err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return transfer.Ledger{}, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := unix.Connect(sock, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(sock)
		return transfer.Ledger{}, err
	}
	tp, err := transfer.New(path, transfer.Options{Chunk: chunk})
	if err != nil {
		unix.Close(sock)
		return transfer.Ledger{}, err
	}
	frame := []byte("framing")
	_, err = tp.Send(sock, []transfer.Part{{Bytes: frame}, {Span: transfer.Span{Fd: int(f.Fd()), Len: int64(size)}}})
	if cerr := tp.Close(); err == nil {
		err = cerr
	}
	unix.Close(sock)
	if n := <-got; err == nil && n != int64(size+len(frame)) {
		err = fmt.Errorf("receiver got %d bytes, want %d", n, size+len(frame))
	}
	return tp.Ledger(), err
}

// TestEBPFUringPathsGroundTruth runs each io_uring transfer path on a
// watched thread and checks the kernel's view against the path's own
// ledger: ops and bytes per opcode exactly equal, and copies per sent
// byte uring 2.00, uring-splice 0.00, uring-zc 0.00 with every zerocopy
// byte copied by the kernel (loopback), +-0.02. SPLICE runs on the
// kernel's iou-wrk threads and SEND_ZC notifications arrive later, from
// softirq: both must still land on the submitter.
func TestEBPFUringPathsGroundTruth(t *testing.T) {
	p := uringOrSkip(t)
	const size = 4 << 20
	f := tempFile(t, size)
	for _, c := range []struct {
		path   string
		copies float64
	}{{"uring", 2}, {"uring-splice", 0}, {"uring-zc", 0}} {
		for _, chunk := range []int{4 << 10, 64 << 10} {
			t.Run(fmt.Sprintf("%s/%d", c.path, chunk), func(t *testing.T) {
				var l transfer.Ledger
				before, after, _ := runLocked(t, p, func() (err error) {
					l, err = uringTransfer(c.path, size, chunk, f)
					return err
				})
				d := after.probe.Sub(before.probe)
				for op, lo := range l.Ops {
					want := metrics.UringOp{Submitted: lo.Submitted, Completed: lo.Completed, Failed: lo.Failed, Bytes: lo.Bytes}
					if got := d.UringOps[op]; got != want {
						t.Errorf("kernel io_uring_ops[%s] = %+v, ledger %+v", op, got, want)
					}
				}
				if len(d.UringOps) != len(l.Ops) {
					t.Errorf("kernel saw opcodes %v, ledger %v", d.UringOps, l.Ops)
				}
				if got, want := d.SyscallsByName["io_uring_enter"], l.Calls["io_uring_enter"]; got != want {
					t.Errorf("io_uring_enter: kernel %d, ledger %d", got, want)
				}
				if d.DeliveredBytes != l.BytesSent {
					t.Errorf("delivered_bytes %d, ledger sent %d", d.DeliveredBytes, l.BytesSent)
				}
				perByte := float64(d.SentFlowCopies()) / float64(d.DeliveredBytes)
				if math.Abs(perByte-c.copies) > 0.02 {
					t.Errorf("copies per sent byte %.3f, want %.2f", perByte, c.copies)
				}
				if c.path == "uring-zc" && (d.ZerocopyBytes != size || d.ZerocopyCopiedBytes != d.ZerocopyBytes) {
					t.Errorf("zerocopy_bytes %d, zerocopy_copied_bytes %d; want %d both (loopback copies)", d.ZerocopyBytes, d.ZerocopyCopiedBytes, size)
				}
				t.Logf("%s/%d: copies/byte %.3f, ops %v, io_uring_enter %d for %d bytes, zerocopy %d copied %d (ledger %d)", c.path, chunk, perByte, d.UringOps, d.SyscallsByName["io_uring_enter"], d.DeliveredBytes, d.ZerocopyBytes, d.ZerocopyCopiedBytes, l.ZCCopiedByte)
			})
		}
	}
}

// TestEBPFUringNotifOverflow: SEND_ZC notifications that find the CQ ring
// full go to the kernel's overflow list, where io_uring_complete never
// sees them; the io_uring_cqe_overflow program must still count their
// bytes as copied (loopback) for the submitter.
func TestEBPFUringNotifOverflow(t *testing.T) {
	p := uringOrSkip(t)
	const sends, k = 16, 4096
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sock)
	if err := unix.Connect(sock, &unix.SockaddrInet4{Port: ln.Addr().(*net.TCPAddr).Port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	r, err := uring.New(sends, sends) // 16 sends + 16 notifications: half overflow
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, k)
	var notifs int
	before, after, _ := runLocked(t, p, func() error {
		for i := 0; i < sends; i++ {
			r.Get().PrepSendZC(sock, buf, 0, uint64(i))
		}
		if _, err := r.Enter(sends); err != nil {
			return err
		}
		for seen := 0; seen < 2*sends; {
			c, ok := r.Peek()
			if !ok {
				if err := r.Wait(1, time.Second); err != nil {
					return fmt.Errorf("wait for %d more CQEs: %w", 2*sends-seen, err)
				}
				continue
			}
			r.Seen()
			seen++
			if c.Flags&uring.CQEFNotif != 0 {
				notifs++
			}
		}
		return nil
	})
	d := after.probe.Sub(before.probe)
	if notifs != sends {
		t.Fatalf("%d notifications, want %d", notifs, sends)
	}
	if d.ZerocopyBytes != sends*k || d.ZerocopyCopiedBytes != sends*k {
		t.Errorf("zerocopy_bytes %d, zerocopy_copied_bytes %d; want %d both (overflowed notifications count)", d.ZerocopyBytes, d.ZerocopyCopiedBytes, sends*k)
	}
}
