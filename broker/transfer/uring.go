package transfer

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/uring"
)

// uringBatchBytes is how many span bytes the io_uring paths put in one
// chain of linked SQEs, submitted and waited for by one io_uring_enter:
// 2 MiB, at most uringMaxChunks chunks and at least one.
const (
	uringBatchBytes = 2 << 20
	uringMaxChunks  = 32
	uringEntries    = 2 * uringMaxChunks // SQEs: two ops per chunk at most
	// uringCQEntries leaves room for SEND_ZC notifications that arrive in
	// bursts (all of a corked response's at once when it is uncorked);
	// more are kept by the kernel (overflow) and flushed by the next wait.
	uringCQEntries = 32 * uringEntries
)

// uringChunks is the number of chunks per io_uring_enter for a chunk size.
func uringChunks(chunk int) int {
	return max(1, min(uringMaxChunks, uringBatchBytes/chunk))
}

// uringOp indexes the ledger's per-opcode counters.
type uringOp int

const (
	opRead uringOp = iota
	opSend
	opSendZC
	opSplice
	numUringOps
)

func (o uringOp) code() uring.Op {
	return [...]uring.Op{opRead: uring.OpRead, opSend: uring.OpSend, opSendZC: uring.OpSendZC, opSplice: uring.OpSplice}[o]
}

// OpCount is one io_uring opcode's account in a ledger: what the kernel's
// io_uring_submit_req and io_uring_complete tracepoints see for it.
type OpCount struct {
	Submitted uint64 // SQEs the kernel consumed
	Completed uint64 // completion CQEs (notifications not included)
	Failed    uint64 // of those, with a negative result (cancelled links included)
	Bytes     uint64 // sum of the positive results
}

// Supported reports whether path name can run here: nil for the classic
// paths, the reason io_uring is unusable (wrapping uring.ErrUnavailable)
// for the io_uring ones. It sets up and closes a one-entry ring.
func Supported(name string) error {
	switch name {
	case "uring", "uring-zc", "uring-splice":
		if err := uring.Available(); err != nil {
			return fmt.Errorf("transfer path %s: %w", name, err)
		}
	}
	return nil
}

// uringCore is the ring and submit/reap loop the three io_uring paths
// share. It lives on the connection's thread; the ring is set up on the
// first Send (io_uring_setup + Mmaps() mmaps in the ledger).
//
// A chain is a run of SQEs linked with IOSQE_IO_LINK, so each starts only
// after the previous one completed in full: sends reach the socket in
// order, a SEND never runs before its READ. A short or failed op cancels
// the rest of the chain (-ECANCELED); the path then resumes from the last
// byte that reached the socket.
type uringCore struct {
	lg    *ledger
	ring  *uring.Ring
	notif func(c uring.CQE) // SEND_ZC notification handler, or nil
	// more is told of every completion that announces a notification
	// (IORING_CQE_F_MORE), before that notification can be reaped.
	more func(c uring.CQE)
	seq  uint64       // user data of the chain's first SQE
	ops  []uringOp    // opcode of each queued SQE of the chain
	sqes []*uring.SQE // the queued SQEs, to link them
	res  []int32      // each SQE's result once completed
}

func (c *uringCore) open() error {
	if c.ring != nil {
		return nil
	}
	c.lg.call(scIoUringSetup)
	r, err := uring.New(uringEntries, uringCQEntries)
	if err != nil {
		return err
	}
	for i := 0; i < r.Mmaps(); i++ {
		c.lg.call(scMmap)
	}
	c.ring = r
	return nil
}

func (c *uringCore) close() error {
	if c.ring == nil {
		return nil
	}
	for i := 0; i < c.ring.Mmaps(); i++ {
		c.lg.call(scMunmap)
	}
	c.lg.call(scClose)
	err := c.ring.Close()
	c.ring = nil
	return err
}

// next returns the chain's next SQE for op and the user data to prep it
// with (the caller's Prep overwrites the SQE; run links them).
func (c *uringCore) next(op uringOp) (*uring.SQE, uint64) {
	sqe := c.ring.Get()
	if sqe == nil {
		panic("transfer: io_uring chain longer than the submission queue") // uringChunks bounds it
	}
	ud := c.seq + uint64(len(c.ops))
	c.ops = append(c.ops, op)
	c.sqes = append(c.sqes, sqe)
	return sqe, ud
}

// chains moves [off, end) in chains of linked operations: fill queues one
// chain from off and returns how many chunks it holds; settle reads the
// completed chain and returns how far the file offset advanced and how many
// bytes reached the socket. After uringStall chains in a row that sent
// nothing it gives up; what names the operations in that error.
func (c *uringCore) chains(off, end int64, what string, fill func(off int64) int, settle func(off int64, k int) (advanced, sent int64, err error)) (int64, error) {
	var total int64
	for stall := 0; off < end; {
		k := fill(off)
		if err := c.run(); err != nil {
			return total, err
		}
		advanced, sent, err := settle(off, k)
		total += sent
		off += advanced
		if err != nil {
			return total, err
		}
		if stall = stall + 1; sent > 0 {
			stall = 0
		}
		if stall > uringStall {
			return total, fmt.Errorf("io_uring %s: %d chains in a row sent nothing at offset %d", what, stall, off)
		}
	}
	return total, nil
}

// run links and submits the chain and waits for a completion of each of
// its SQEs, into c.res: one io_uring_enter when the kernel completes the
// chain before returning to it, more when it had to wait. Notification
// CQEs that arrive meanwhile go to c.notif.
func (c *uringCore) run() error {
	n := len(c.ops)
	for i, sqe := range c.sqes {
		if i < n-1 {
			sqe.Flags |= uring.SQEIOLink
		}
	}
	c.res = c.res[:0]
	for range n {
		c.res = append(c.res, 0)
	}
	done := 0
	for done < n {
		queued := int(c.ring.Queued())
		c.lg.call(scIoUringEnter)
		_, err := c.ring.Enter(uint32(n - done))
		for i := n - queued; i < n-int(c.ring.Queued()); i++ {
			c.lg.ops[c.ops[i]][0].Add(1)
		}
		if err != nil && !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("io_uring_enter (%d of %d ops outstanding): %w", n-done, n, err)
		}
		done += c.reap()
	}
	c.seq += uint64(n)
	c.ops, c.sqes = c.ops[:0], c.sqes[:0]
	return nil
}

// reap consumes every CQE in the ring, counting the chain's completions
// by opcode, and returns how many of the chain's SQEs completed.
func (c *uringCore) reap() int {
	done := 0
	for {
		cqe, ok := c.ring.Peek()
		if !ok {
			return done
		}
		c.ring.Seen()
		if cqe.Flags&uring.CQEFNotif != 0 {
			if c.notif != nil {
				c.notif(cqe)
			}
			continue
		}
		i := cqe.UserData - c.seq
		if i >= uint64(len(c.ops)) {
			continue // not this chain's: cannot happen, chains run one at a time
		}
		c.res[i] = cqe.Res
		if cqe.Flags&uring.CQEFMore != 0 && c.more != nil {
			c.more(cqe)
		}
		op := &c.lg.ops[c.ops[i]]
		op[1].Add(1)
		if cqe.Res < 0 {
			op[2].Add(1)
		} else {
			op[3].Add(uint64(cqe.Res))
		}
		done++
	}
}

// errno turns a negative CQE result into its error.
func errno(res int32) error { return unix.Errno(-res) }

// uringStall bounds how many chains in a row may deliver nothing before a
// path gives up (EINTR storms, a socket that never drains).
const uringStall = 1000

// Usable splits names into the paths that can run here and, for the
// others, why not (see Supported), so a default of every path can skip the
// io_uring ones with the reason where io_uring is unavailable.
func Usable(names []string) (ok []string, skipped map[string]error) {
	for _, n := range names {
		if err := Supported(n); err != nil {
			if skipped == nil {
				skipped = map[string]error{}
			}
			skipped[n] = err
			continue
		}
		ok = append(ok, n)
	}
	return ok, skipped
}
