//go:build linux && amd64

package probes

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/metrics"
)

// A minimal io_uring (one SQE in flight), enough to issue known operations
// from a test without a library. Layouts from include/uapi/linux/io_uring.h.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  [10]uint32 // head, tail, ring_mask, ring_entries, flags, dropped, array, resv1, user_addr(u64)
	cqOff                                                                  [10]uint32 // head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1, user_addr(u64)
}

type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

type uring struct {
	fd        int
	sq, cq    []byte
	sqes      []byte
	p         uringParams
	submitted uint64
}

const (
	uringOpRead  = 22
	uringOpWrite = 23
	uringOpSend  = 26
)

func newUring() (*uring, error) {
	u := &uring{}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&u.p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	u.fd = int(fd)
	var err error
	if u.sq, err = unix.Mmap(u.fd, 0, int(u.p.sqOff[6]+u.p.sqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap sq ring: %w", err)
	}
	if u.cq, err = unix.Mmap(u.fd, 0x8000000, int(u.p.cqOff[5]+u.p.cqEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap cq ring: %w", err)
	}
	if u.sqes, err = unix.Mmap(u.fd, 0x10000000, int(u.p.sqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap sqes: %w", err)
	}
	return u, nil
}

func (u *uring) u32(ring []byte, off uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&ring[off]))
}

// do submits one operation and waits for its completion.
func (u *uring) do(op uint8, fd int, buf []byte, off uint64) (int32, error) {
	tail := atomic.LoadUint32(u.u32(u.sq, u.p.sqOff[1]))
	mask := *u.u32(u.sq, u.p.sqOff[2])
	idx := tail & mask
	sqe := (*uringSQE)(unsafe.Pointer(&u.sqes[idx*64]))
	*sqe = uringSQE{opcode: op, fd: int32(fd), off: off, addr: uint64(uintptr(unsafe.Pointer(&buf[0]))), len: uint32(len(buf)), userData: u.submitted}
	*u.u32(u.sq, u.p.sqOff[6]+idx*4) = idx
	atomic.StoreUint32(u.u32(u.sq, u.p.sqOff[1]), tail+1)
	u.submitted++
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 1, 1, 1 /* GETEVENTS */, 0, 0); errno != 0 {
		return 0, fmt.Errorf("io_uring_enter: %w", errno)
	}
	head := atomic.LoadUint32(u.u32(u.cq, u.p.cqOff[0]))
	if atomic.LoadUint32(u.u32(u.cq, u.p.cqOff[1])) == head {
		return 0, fmt.Errorf("io_uring: no completion after io_uring_enter")
	}
	cmask := *u.u32(u.cq, u.p.cqOff[2])
	cqe := (*uringCQE)(unsafe.Pointer(&u.cq[u.p.cqOff[5]+(head&cmask)*16]))
	res := cqe.res
	atomic.StoreUint32(u.u32(u.cq, u.p.cqOff[0]), head+1)
	return res, nil
}

func (u *uring) close() {
	unix.Munmap(u.sqes)
	unix.Munmap(u.cq)
	unix.Munmap(u.sq)
	unix.Close(u.fd)
}

// TestEBPFIOUring checks that io_uring reads, writes and sends, which are
// not syscalls, are counted by class and attributed to the submitter.
func TestEBPFIOUring(t *testing.T) {
	p := openEBPFOrSkip(t)
	if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil && len(b) > 0 && b[0] != '0' {
		t.Skipf("io_uring is disabled here (kernel.io_uring_disabled=%s)", b[:1])
	}
	for _, n := range p.Notes() {
		if len(n) > 6 && n[:6] == "uring_" {
			t.Skipf("io_uring programs not attached: %s", n)
		}
	}
	const n, k = 16, 4096
	src := tempFile(t, n*k)
	dst := tempFile(t, 0)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitSock := drain(sp[1])
	u, err := newUring()
	if err != nil {
		t.Skipf("io_uring not usable: %v", err)
	}
	defer u.close()
	before, after, _ := runLocked(t, p, func() error {
		buf := make([]byte, k)
		for i := 0; i < n; i++ {
			for _, op := range []struct {
				code uint8
				fd   int
			}{{uringOpRead, int(src.Fd())}, {uringOpWrite, int(dst.Fd())}, {uringOpSend, sp[0]}} {
				res, err := u.do(op.code, op.fd, buf, uint64(i*k))
				if err != nil {
					return err
				}
				if res != k {
					return fmt.Errorf("io_uring op %d: res %d, want %d", op.code, res, k)
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
}
