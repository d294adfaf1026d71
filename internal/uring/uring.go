//go:build linux

// Package uring is a minimal io_uring on golang.org/x/sys/unix: one ring
// (submission queue, completion queue and SQE array mapped from the ring
// fd), batched submission and in-place completion reaping, and the few
// operations copyscope's transfer paths issue. No Go io_uring library is
// available to this module, so this is the smallest ring that serves them:
// no SQPOLL, no registered files, no provided buffers.
//
// Every method makes exactly the syscalls its comment names, so a caller
// can keep an exact ledger: New makes io_uring_setup and two mmaps (three
// on a kernel without IORING_FEAT_SINGLE_MMAP; see Ring.Mmaps), Enter one
// io_uring_enter, Close as many munmaps as New made mmaps plus one close.
// Get, Peek and Seen touch shared memory only. A Ring is not safe for
// concurrent use.
//
// The layouts follow include/uapi/linux/io_uring.h (stable ABI).
package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/procfs"
)

// Op is an io_uring opcode (enum io_uring_op).
type Op uint8

// The opcodes this package's users issue.
const (
	OpNop    Op = 0
	OpRead   Op = 22
	OpWrite  Op = 23
	OpSend   Op = 26
	OpSplice Op = 30
	OpSendZC Op = 47
)

// opNames are the uapi names of the opcodes the probes meet most.
var opNames = map[Op]string{
	0: "NOP", 1: "READV", 2: "WRITEV", 3: "FSYNC", 4: "READ_FIXED", 5: "WRITE_FIXED",
	6: "POLL_ADD", 9: "SENDMSG", 10: "RECVMSG", 11: "TIMEOUT", 13: "ACCEPT",
	16: "CONNECT", 18: "OPENAT", 19: "CLOSE", 21: "STATX", 22: "READ", 23: "WRITE",
	26: "SEND", 27: "RECV", 30: "SPLICE", 33: "TEE", 34: "SHUTDOWN", 47: "SEND_ZC",
	48: "SENDMSG_ZC", 49: "READ_MULTISHOT", 60: "READV_FIXED", 61: "WRITEV_FIXED",
}

// String is the opcode's name without the IORING_OP_ prefix, as the probes
// and the ledgers spell it.
func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("OP_%d", uint8(o))
}

// SQE flags (IOSQE_*), CQE flags (IORING_CQE_F_*) and operation flags.
const (
	// SQEIOLink makes the next SQE start only after this one completed
	// in full; a failed or short link cancels the rest of the chain.
	SQEIOLink = 1 << 2
	// CQEFMore: more CQEs follow for this request (SEND_ZC's notification).
	CQEFMore = 1 << 1
	// CQEFNotif marks a SEND_ZC notification CQE: the kernel released the
	// buffer.
	CQEFNotif = 1 << 3
	// SendZCReportUsage (in SQE.Ioprio) asks the notification CQE to say
	// whether the kernel copied the data after all.
	SendZCReportUsage = 1 << 3
	// NotifUsageZCCopied is set in a notification CQE's Res when the data
	// was copied (at least partially) instead of sent by reference.
	NotifUsageZCCopied = 1 << 31

	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3
	setupCQSize    = 1 << 3
	featSingleMmap = 1 << 0

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// SQE is struct io_uring_sqe (64 bytes). Field names follow the kernel's;
// unions are named by the member these operations use.
type SQE struct {
	Opcode      Op
	Flags       uint8
	Ioprio      uint16 // SEND_ZC: IORING_RECVSEND_* and SendZCReportUsage
	Fd          int32  // file, socket, or SPLICE's fd_out
	Off         uint64 // file offset; SPLICE: off_out (^0 for none)
	Addr        uint64 // buffer address; SPLICE: off_in (^0 for none)
	Len         uint32
	OpFlags     uint32 // rw_flags, msg_flags or splice_flags
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

// CQE is struct io_uring_cqe (16 bytes, no CQE32).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// params is struct io_uring_params (120 bytes).
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// Ring is one io_uring instance.
type Ring struct {
	fd         int
	sqMem      []byte // SQ ring (and CQ ring with SINGLE_MMAP)
	cqMem      []byte // CQ ring when mapped separately, else nil
	sqeMem     []byte
	sqHead     *uint32
	sqTail     *uint32
	sqMask     uint32
	sqEntries  uint32
	cqHead     *uint32
	cqTail     *uint32
	cqMask     uint32
	cqes       unsafe.Pointer
	sqes       unsafe.Pointer
	localTail  uint32 // SQEs handed out by Get, published by Enter
	published  uint32 // tail value the kernel has been shown
	cqEntries  uint32
	cqOverflow *uint32
	sqFlags    *uint32
	mmaps      int
	closed     bool
	sqeSize    uintptr
	cqeSize    uintptr
}

// ErrUnavailable wraps every reason io_uring cannot be used here
// (disabled by sysctl, blocked by seccomp or a container, old kernel).
var ErrUnavailable = errors.New("io_uring unavailable")

// New sets up a ring with at least entries SQEs and cqEntries CQEs (both
// rounded up to a power of two by the kernel; cqEntries 0 means twice
// entries). Syscalls: io_uring_setup, then Mmaps() mmaps.
func New(entries, cqEntries uint32) (*Ring, error) {
	var p params
	if cqEntries > 0 {
		p.flags, p.cqEntries = setupCQSize, cqEntries
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, setupError(errno)
	}
	r := &Ring{fd: int(fd), sqeSize: unsafe.Sizeof(SQE{}), cqeSize: unsafe.Sizeof(CQE{})}
	if err := r.mapRings(&p); err != nil {
		r.unmap()
		unix.Close(r.fd)
		return nil, err
	}
	return r, nil
}

// setupError explains why io_uring_setup failed, naming the knob to turn.
func setupError(errno unix.Errno) error {
	switch errno {
	case unix.ENOSYS:
		return fmt.Errorf("%w: io_uring_setup: %v (kernel older than 5.1, built without CONFIG_IO_URING, or the syscall is filtered by seccomp)", ErrUnavailable, errno)
	case unix.EPERM:
		why := "blocked by seccomp or a container runtime"
		if v, err := procfs.Sysctl("kernel/io_uring_disabled"); err == nil {
			switch v {
			case "2":
				why = "kernel.io_uring_disabled=2 (disabled for everyone; set it to 0)"
			case "1":
				why = "kernel.io_uring_disabled=1 (only root or kernel.io_uring_group may use it)"
			}
		}
		return fmt.Errorf("%w: io_uring_setup: %v: %s", ErrUnavailable, errno, why)
	case unix.ENOMEM:
		return fmt.Errorf("io_uring_setup: %v (locked-memory limit too low: raise ulimit -l)", errno)
	}
	return fmt.Errorf("io_uring_setup: %w", errno)
}

// mapRings maps the SQ and CQ rings and the SQE array and wires pointers
// into them.
func (r *Ring) mapRings(p *params) error {
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(r.cqeSize))
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	var err error
	r.mmaps++
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("mmap io_uring SQ ring (%d bytes): %w", sqSize, err)
	}
	cqMem := r.sqMem
	if !single {
		r.mmaps++
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("mmap io_uring CQ ring (%d bytes): %w", cqSize, err)
		}
		cqMem = r.cqMem
	}
	sqeBytes := int(p.sqEntries) * int(r.sqeSize)
	r.mmaps++
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeBytes, prot, flags); err != nil {
		return fmt.Errorf("mmap io_uring SQE array (%d bytes): %w", sqeBytes, err)
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail = u32(r.sqMem, p.sqOff.head), u32(r.sqMem, p.sqOff.tail)
	r.sqMask, r.sqEntries = *u32(r.sqMem, p.sqOff.ringMask), p.sqEntries
	r.cqHead, r.cqTail = u32(cqMem, p.cqOff.head), u32(cqMem, p.cqOff.tail)
	r.cqMask, r.cqEntries = *u32(cqMem, p.cqOff.ringMask), p.cqEntries
	r.cqOverflow, r.sqFlags = u32(cqMem, p.cqOff.overflow), u32(r.sqMem, p.sqOff.flags)
	r.cqes = unsafe.Pointer(&cqMem[p.cqOff.cqes])
	r.sqes = unsafe.Pointer(&r.sqeMem[0])
	// SQ slot i always names SQE i: Get hands SQEs out in ring order.
	for i := uint32(0); i < p.sqEntries; i++ {
		*u32(r.sqMem, p.sqOff.array+4*i) = i
	}
	r.localTail = atomic.LoadUint32(r.sqTail)
	r.published = r.localTail
	return nil
}

// Mmaps is how many mappings New made (and Close unmaps): 2 with
// IORING_FEAT_SINGLE_MMAP (every kernel since 5.4), else 3.
func (r *Ring) Mmaps() int { return r.mmaps }

// SQEntries is the submission queue's size; CQEntries the completion
// queue's.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }

// CQEntries is the completion queue's size.
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

// Get returns the next free SQE, zeroed, or nil if the submission queue is
// full (call Enter first). It is not visible to the kernel before Enter.
func (r *Ring) Get() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.localTail-head >= r.sqEntries {
		return nil
	}
	sqe := (*SQE)(unsafe.Add(r.sqes, uintptr(r.localTail&r.sqMask)*r.sqeSize))
	*sqe = SQE{}
	r.localTail++
	return sqe
}

// Queued is the number of SQEs prepared with Get and not yet submitted.
func (r *Ring) Queued() uint32 { return r.localTail - r.published }

// Enter publishes the queued SQEs and makes one io_uring_enter that submits
// them and, if wait > 0, blocks until at least wait completions are in the
// CQ ring. It returns how many SQEs the kernel consumed. On EINTR or
// EAGAIN/EBUSY the caller retries (whatever was consumed stays consumed;
// Queued says what is left).
func (r *Ring) Enter(wait uint32) (int, error) {
	atomic.StoreUint32(r.sqTail, r.localTail)
	toSubmit := r.localTail - r.published
	var flags uintptr
	if wait > 0 {
		flags = enterGetEvents
	}
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(wait), flags, 0, 0)
	if errno != 0 {
		// The kernel may have consumed some before failing.
		r.published = atomic.LoadUint32(r.sqHead)
		return 0, errno
	}
	r.published += uint32(n)
	return int(n), nil
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	pad       uint32
	ts        uint64
}

// Wait makes one io_uring_enter that submits nothing and blocks until at
// least n completions are in the CQ ring or timeout passes (ETIME). With
// n 0 it returns at once, after the kernel ran the ring's pending task work
// and moved overflowed CQEs into the ring.
func (r *Ring) Wait(n uint32, timeout time.Duration) error {
	ts := unix.NsecToTimespec(timeout.Nanoseconds())
	arg := getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&ts)))}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, uintptr(n), enterGetEvents|enterExtArg, uintptr(unsafe.Pointer(&arg)), unsafe.Sizeof(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// Peek returns the oldest unseen completion without consuming it; call
// Seen when done with it.
func (r *Ring) Peek() (CQE, bool) {
	head := atomic.LoadUint32(r.cqHead)
	if head == atomic.LoadUint32(r.cqTail) {
		return CQE{}, false
	}
	return *(*CQE)(unsafe.Add(r.cqes, uintptr(head&r.cqMask)*r.cqeSize)), true
}

// Seen consumes the completion Peek returned, freeing its CQ slot.
func (r *Ring) Seen() {
	atomic.AddUint32(r.cqHead, 1)
}

// Overflowed is the kernel's count of CQEs it could not post because the
// CQ ring was full (kept and posted later on kernels with
// IORING_FEAT_NODROP, dropped on older ones).
func (r *Ring) Overflowed() uint32 { return atomic.LoadUint32(r.cqOverflow) }

// SQFlags is the SQ ring's flags word (IORING_SQ_CQ_OVERFLOW, _TASKRUN).
func (r *Ring) SQFlags() uint32 { return atomic.LoadUint32(r.sqFlags) }

// Fd is the ring's file descriptor.
func (r *Ring) Fd() int { return r.fd }

// Close unmaps the rings (Mmaps() munmaps) and closes the ring fd. The
// kernel cancels what is still in flight; buffers those operations
// reference must outlive Close only if the caller cannot wait for them.
func (r *Ring) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.unmap()
	if err := unix.Close(r.fd); err != nil {
		return fmt.Errorf("close io_uring fd %d: %w", r.fd, err)
	}
	return nil
}

func (r *Ring) unmap() {
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.sqMem} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
}

// Available reports whether this process can set up a ring, with the
// reason when not (wrapping ErrUnavailable). It sets up and closes a
// one-entry ring.
func Available() error {
	r, err := New(1, 0)
	if err != nil {
		return err
	}
	return r.Close()
}
