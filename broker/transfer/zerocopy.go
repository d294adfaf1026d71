package transfer

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// zcReapBytes is how many bytes the path sends between reaps of the error
// queue in the middle of a Send: every MiB, i.e. every send at 1 MiB
// chunks, every 256th at 4 KiB. ENOBUFS (too many outstanding) is
// handled by reaping early.
const zcReapBytes = 1 << 20

// zcCloseWait bounds how long Close waits for outstanding completions.
const zcCloseWait = 5 * time.Second

// ZerocopyCopiedNote is the ledger note of a zerocopy path whose sends the
// kernel copied after all (always on loopback): its zero-copy claim is void.
const ZerocopyCopiedNote = "MSG_ZEROCOPY: the kernel copied the data (SO_EE_CODE_ZEROCOPY_COPIED), as it always does on loopback; these bytes were not sent zero-copy"

// zcSend is one MSG_ZEROCOPY sendmsg awaiting its completion.
type zcSend struct {
	bytes uint64
	done  bool
}

// zerocopyPath sends spans with sendmsg(MSG_ZEROCOPY) from a read-only
// mapping of the segment (SO_ZEROCOPY set on the socket) and reaps the
// completions from the socket's error queue. It counts notifications and
// the bytes the kernel flagged SO_EE_CODE_ZEROCOPY_COPIED (on loopback all
// of them: the kernel copies). No mapping is unmapped before every send
// from it has completed.
type zerocopyPath struct {
	pathBase
	cache   mapCache
	sock    int      // socket SO_ZEROCOPY was set on, -1 before the first Send
	base    uint64   // sequence number of pending[0]
	pending []zcSend // sends base, base+1, ... not yet reaped in order
	// unreaped counts bytes sent since the last mid-Send reap.
	unreaped int
	oob      []byte
	one      []byte
	// Reused sendmsg/recvmsg headers: no allocation per call.
	shdr, rhdr unix.Msghdr
	siov, riov unix.Iovec
	closed     bool
}

func newZerocopyPath(opts Options) *zerocopyPath {
	p := &zerocopyPath{sock: -1, oob: make([]byte, 128), one: make([]byte, 1)}
	p.init(opts)
	p.cache.lg = &p.lg
	p.cache.busy = func(m *mapping) bool { return m.zc && m.lastSeq >= p.base }
	return p
}

func (p *zerocopyPath) Name() string { return "zerocopy" }

// next is the sequence number the kernel gives the next zerocopy send.
func (p *zerocopyPath) next() uint64 { return p.base + uint64(len(p.pending)) }

func (p *zerocopyPath) Send(sock int, parts []Part) (int64, error) {
	if p.closed {
		return 0, fmt.Errorf("zerocopy path: Send after Close")
	}
	if sock != p.sock {
		if p.sock >= 0 && len(p.pending) > 0 {
			if err := p.wait(zcCloseWait); err != nil {
				return 0, fmt.Errorf("zerocopy path moved to socket %d with sends pending on %d: %w", sock, p.sock, err)
			}
		}
		p.lg.call(scSetsockopt)
		if err := unix.SetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
			return 0, fmt.Errorf("set SO_ZEROCOPY on socket %d: %w (needs Linux 4.14+ and a TCP socket)", sock, err)
		}
		// The kernel numbers zerocopy sends per socket from 0.
		p.sock, p.base, p.pending = sock, 0, p.pending[:0]
	}
	p.cache.begin()
	n, err := sendParts(sock, parts, &p.lg, p.ck, p.span)
	if len(p.pending) > 0 {
		if rerr := p.reap(); rerr != nil && err == nil {
			err = rerr
		}
	}
	p.cache.end()
	return n, err
}

func (p *zerocopyPath) span(sock int, s Span, _ bool) (int64, error) {
	return p.cache.sendMapped(s, p.chunk, func(m *mapping, b []byte) (int64, error) {
		return p.sendOne(sock, m, b)
	})
}

// sendOne makes one MSG_ZEROCOPY sendmsg of b from mapping m and returns
// the bytes it sent: 0 with no error to try again (interrupted, or the
// kernel's completion budget was full and some were reaped).
func (p *zerocopyPath) sendOne(sock int, m *mapping, b []byte) (int64, error) {
	p.lg.call(scSendmsg)
	n, err := p.sendmsg(sock, b)
	if n > 0 {
		m.zc, m.lastSeq = true, p.next()
		p.pending = append(p.pending, zcSend{bytes: uint64(n)})
		p.lg.sent(int64(n), true)
		p.lg.zcSent(n)
	}
	if err == unix.ENOBUFS {
		// Too many completions outstanding (optmem_max): reap some.
		if len(p.pending) == 0 {
			return 0, fmt.Errorf("sendmsg MSG_ZEROCOPY: %w with nothing outstanding (raise net.core.optmem_max)", err)
		}
		return 0, p.waitSome(time.Second)
	}
	if err := settle(sock, int64(n), err, &p.lg, errWroteNothing); err != nil {
		return int64(n), fmt.Errorf("sendmsg MSG_ZEROCOPY %d bytes to socket %d: %w", len(b), sock, err)
	}
	if p.unreaped += n; p.unreaped >= zcReapBytes {
		p.unreaped = 0
		if err := p.reap(); err != nil {
			return int64(n), err
		}
	}
	return int64(n), nil
}

// reap reads every completion already queued, without blocking.
func (p *zerocopyPath) reap() error {
	for {
		p.lg.call(scRecvmsg)
		oobn, err := p.recvErrqueue()
		if err == unix.EAGAIN {
			return nil
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read error queue of socket %d for zerocopy completions: %w", p.sock, err)
		}
		if err := p.complete(p.oob[:oobn]); err != nil {
			return err
		}
	}
}

// sendmsg sends b with MSG_ZEROCOPY through the reused header (unix.SendmsgN
// allocates per call).
func (p *zerocopyPath) sendmsg(sock int, b []byte) (int, error) {
	p.siov.Base = &b[0]
	p.siov.SetLen(len(b))
	p.shdr.Iov = &p.siov
	p.shdr.SetIovlen(1)
	n, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(sock), uintptr(unsafe.Pointer(&p.shdr)), unix.MSG_ZEROCOPY)
	p.siov.Base = nil
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// recvErrqueue reads one error-queue message without blocking and returns
// the length of its control data in p.oob.
func (p *zerocopyPath) recvErrqueue() (int, error) {
	p.riov.Base = &p.one[0]
	p.riov.SetLen(len(p.one))
	p.rhdr.Iov = &p.riov
	p.rhdr.SetIovlen(1)
	p.rhdr.Control = &p.oob[0]
	p.rhdr.SetControllen(len(p.oob))
	p.rhdr.Flags = 0
	_, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(p.sock), uintptr(unsafe.Pointer(&p.rhdr)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
	if errno != 0 {
		return 0, errno
	}
	return int(p.rhdr.Controllen), nil
}

// cmsgAlign rounds a control-message length up as CMSG_ALIGN does.
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uint(0)))
	return (n + a - 1) &^ (a - 1)
}

// complete parses one error-queue message (walking the control messages
// in place, without allocating) and marks its sends done.
func (p *zerocopyPath) complete(oob []byte) error {
	hdrLen := cmsgAlign(unix.SizeofCmsghdr)
	for off := 0; off+hdrLen <= len(oob); {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
		clen := int(h.Len)
		if clen < hdrLen || off+clen > len(oob) {
			return fmt.Errorf("zerocopy completion: control message of %d bytes at %d in %d", clen, off, len(oob))
		}
		data := oob[off+hdrLen : off+clen]
		off += cmsgAlign(clen)
		if !(h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR) &&
			!(h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_RECVERR) {
			continue
		}
		if len(data) < 16 {
			return fmt.Errorf("zerocopy completion: extended error of %d bytes, want 16", len(data))
		}
		errno := binary.NativeEndian.Uint32(data[0:])
		origin, code := data[4], data[6]
		lo, hi := binary.NativeEndian.Uint32(data[8:]), binary.NativeEndian.Uint32(data[12:])
		if origin != unix.SO_EE_ORIGIN_ZEROCOPY {
			return fmt.Errorf("socket %d error queue: errno %d origin %d (not a zerocopy completion): %w", p.sock, errno, origin, unix.Errno(errno))
		}
		if errno != 0 {
			return fmt.Errorf("zerocopy completion reports %w", unix.Errno(errno))
		}
		copied := code&unix.SO_EE_CODE_ZEROCOPY_COPIED != 0
		var copiedBytes uint64
		// Sequence numbers are 32 bits in the kernel; index from base.
		for s := lo; ; s++ {
			idx := uint64(s - uint32(p.base))
			if idx < uint64(len(p.pending)) && !p.pending[idx].done {
				p.pending[idx].done = true
				if copied {
					copiedBytes += p.pending[idx].bytes
				}
			}
			if s == hi {
				break
			}
		}
		p.lg.zcNotified(copied, copiedBytes, ZerocopyCopiedNote)
	}
	// Advance past the completed prefix.
	k := 0
	for k < len(p.pending) && p.pending[k].done {
		k++
	}
	if k > 0 {
		p.base += uint64(k)
		p.pending = append(p.pending[:0], p.pending[k:]...)
	}
	return nil
}

// waitSome blocks until at least one completion arrives (or timeout).
func (p *zerocopyPath) waitSome(timeout time.Duration) error {
	before := p.base
	deadline := time.Now().Add(timeout)
	for p.base == before && len(p.pending) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("zerocopy: no completion on socket %d within %v (%d sends outstanding)", p.sock, timeout, len(p.pending))
		}
		fds := []unix.PollFd{{Fd: int32(p.sock)}} // POLLERR is always reported
		p.lg.call(scPpoll)
		_, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll socket %d for zerocopy completions: %w", p.sock, err)
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			return errSockGone
		}
		if err := p.reap(); err != nil {
			return err
		}
	}
	return nil
}

// errSockGone: the socket was closed with sends outstanding; the kernel
// keeps its own page references, so the mappings may go.
var errSockGone = fmt.Errorf("socket closed before its zerocopy completions were read")

// wait blocks until every send has completed, or timeout.
func (p *zerocopyPath) wait(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for len(p.pending) > 0 {
		if err := p.waitSome(time.Until(deadline)); err != nil {
			return err
		}
	}
	return nil
}

// Close waits for every outstanding completion, then unmaps.
func (p *zerocopyPath) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	var err error
	if p.sock >= 0 && len(p.pending) > 0 {
		err = p.wait(zcCloseWait)
		if err == errSockGone {
			// Nothing will complete; the kernel holds the pages itself.
			p.lg.note(fmt.Sprintf("zerocopy: socket closed with %d sends unreaped; call Close before closing the socket to count them", len(p.pending)))
			p.base += uint64(len(p.pending))
			p.pending = p.pending[:0]
			err = nil
		}
	}
	if left := p.cache.closeAll(); left > 0 {
		return fmt.Errorf("zerocopy close: %d mappings left mapped, their sends never completed: %w", left, err)
	}
	return err
}
