package transfer

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/uring"
)

// UringZCCopiedNote is the ledger note of a uring-zc path whose sends the
// kernel copied after all (always on loopback).
const UringZCCopiedNote = "io_uring SEND_ZC: the kernel copied the data (IORING_NOTIF_USAGE_ZC_COPIED), as it always does on loopback; these bytes were not sent zero-copy"

// uringZCPath sends spans with IORING_OP_SEND_ZC straight from a read-only
// mapping of the segment, up to uringChunks(chunk) linked sends per chain
// and per io_uring_enter. Each send completes twice: once when its bytes
// are queued (IORING_CQE_F_MORE), once more with a notification CQE
// (IORING_CQE_F_NOTIF) when the kernel let go of the pages; with
// IORING_SEND_ZC_REPORT_USAGE the notification says whether the kernel
// copied after all (IORING_NOTIF_USAGE_ZC_COPIED), counted as
// ZCCopiedByte. No mapping is unmapped before its notifications arrived.
type uringZCPath struct {
	lg    ledger
	ck    corker
	core  uringCore
	chunk int
	cache mapCache
	// pending maps the user data of each send whose notification has not
	// arrived to its bytes. The kernel stacks the notifications of
	// consecutive sends on one socket (Linux 6.10+): none may arrive
	// until the stream of sends pauses, so thousands can be pending, and
	// lookups must not scan.
	pending map[uint64]uint64
	// lowest is at or below the smallest pending user data (advanced
	// lazily, each value once): mappings referenced by sends from it on
	// are still busy.
	lowest uint64
	closed bool
}

func newUringZCPath(opts Options) *uringZCPath {
	p := &uringZCPath{chunk: opts.chunk(), pending: map[uint64]uint64{}}
	p.lg.init(p.chunk)
	p.ck = corker{off: opts.NoCork, chunk: opts.chunk()}
	p.core.lg = &p.lg
	p.core.more = p.announced
	p.core.notif = p.notified
	p.cache.lg = &p.lg
	p.cache.busy = func(m *mapping) bool { return m.zc && len(p.pending) > 0 && m.lastSeq >= p.oldest() }
	return p
}

func (p *uringZCPath) Name() string   { return "uring-zc" }
func (p *uringZCPath) Ledger() Ledger { return p.lg.snapshot() }

// announced records a send whose notification will follow.
func (p *uringZCPath) announced(c uring.CQE) {
	p.pending[c.UserData] = uint64(max(c.Res, 0))
}

// oldest is the smallest user data still pending (len(pending) > 0).
func (p *uringZCPath) oldest() uint64 {
	for _, ok := p.pending[p.lowest]; !ok && p.lowest < p.core.seq; _, ok = p.pending[p.lowest] {
		p.lowest++
	}
	return p.lowest
}

// notified counts a notification and releases its send.
func (p *uringZCPath) notified(c uring.CQE) {
	copied := uint32(c.Res)&uring.NotifUsageZCCopied != 0
	bytes := p.pending[c.UserData]
	delete(p.pending, c.UserData)
	p.lg.zcNotified(copied, bytes, UringZCCopiedNote)
}

func (p *uringZCPath) Send(sock int, parts []Part) (int64, error) {
	if p.closed {
		return 0, fmt.Errorf("uring-zc path: Send after Close")
	}
	if err := p.core.open(); err != nil {
		return 0, fmt.Errorf("uring-zc path: %w", err)
	}
	p.cache.begin()
	n, err := sendParts(sock, parts, &p.lg, p.ck, p.span)
	p.core.reap() // notifications already posted: no syscall
	p.cache.end()
	return n, err
}

func (p *uringZCPath) span(sock int, s Span, _ bool) (int64, error) {
	m, err := p.cache.get(s.Fd, s.Off+s.Len)
	if err != nil {
		return 0, err
	}
	end := s.Off + s.Len
	fill := func(off int64) int {
		k := 0
		for o := off; o < end && k < uringChunks(p.chunk); k++ {
			n := min(int64(p.chunk), end-o)
			sqe, ud := p.core.next(opSendZC)
			sqe.PrepSendZC(sock, m.data[o:o+n], unix.MSG_WAITALL, ud)
			m.zc, m.lastSeq = true, ud
			o += n
		}
		return k
	}
	return p.core.chains(s.Off, end, "SEND_ZC", fill, func(off int64, k int) (int64, int64, error) {
		sent, err := p.settle(sock, off, end, k)
		return sent, sent, err
	})
}

// settle walks a completed chain of k SEND_ZCs and returns the bytes that
// reached the socket in order, up to the first short or failed one.
func (p *uringZCPath) settle(sock int, off, end int64, k int) (int64, error) {
	var sent int64
	for i := 0; i < k; i++ {
		want := int32(min(int64(p.chunk), end-off-sent))
		r := p.core.res[i]
		if r > 0 {
			sent += int64(r)
			p.lg.sent(int64(r), true)
			p.lg.zcSent(int(r))
		}
		if r == want {
			continue
		}
		switch {
		case r == -int32(unix.EINVAL) && p.lg.zcSends.Load() == 0:
			return sent, fmt.Errorf("io_uring SEND_ZC to socket %d: %w (needs Linux 6.0+)", sock, errno(r))
		case r == -int32(unix.EOPNOTSUPP):
			return sent, fmt.Errorf("io_uring SEND_ZC to socket %d: %w (the socket lacks SOCK_SUPPORT_ZC: not TCP, or accepted from an MPTCP listener; listen with MPTCP off)", sock, errno(r))
		case r == -int32(unix.EAGAIN):
			return sent, waitWritable(sock, &p.lg)
		case r < 0 && r != -int32(unix.ECANCELED) && r != -int32(unix.EINTR):
			return sent, fmt.Errorf("io_uring SEND_ZC %d bytes at %d to socket %d: %w", want, off+sent, sock, errno(r))
		}
		return sent, nil
	}
	return sent, nil
}

// waitNotifs waits on the ring until every notification arrived or
// timeout, one io_uring_enter per wake-up.
func (p *uringZCPath) waitNotifs(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for p.core.reap(); len(p.pending) > 0; p.core.reap() {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("uring-zc: %d sends without a notification after %v", len(p.pending), timeout)
		}
		p.lg.call(scIoUringEnter)
		if err := p.core.ring.Wait(1, left); err != nil && err != unix.ETIME && err != unix.EINTR {
			return fmt.Errorf("uring-zc: wait for notifications: %w", err)
		}
	}
	return nil
}

// Close waits for every outstanding notification, then unmaps.
func (p *uringZCPath) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	if p.core.ring != nil && len(p.pending) > 0 {
		if err := p.waitNotifs(zcCloseWait); err != nil {
			p.lg.note(err.Error() + "; the ring is closed anyway, uncounted")
		}
		clear(p.pending)
	}
	err := p.core.close()
	if left := p.cache.closeAll(); left > 0 && err == nil {
		err = fmt.Errorf("uring-zc close: %d mappings left mapped", left)
	}
	return err
}
