package transfer

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/copyscope/copyscope/internal/uring"
)

// uringArithmetic is the io_uring paths' share of arithmetic(): for n span
// bytes in chunks of c, k = n/c chunks go in chains of uringChunks(c), one
// io_uring_enter per chain (up to one more per chain tolerated: a wait cut
// short), plus the ring's setup and teardown (io_uring_setup, two mmaps
// and munmaps with IORING_FEAT_SINGLE_MMAP, a close) and the framing write
// and cork of every path. uring maps its buffer (one more mmap/munmap);
// uring-splice makes its pipe (pipe2, fcntl, two closes); uring-zc maps
// the segment (fstat, mmap, munmap) and may ppoll the ring in Close for
// late notifications.
func uringArithmetic(name string, n, c int) (want, slack map[string]uint64) {
	chains := uint64((n/c + uringChunks(c) - 1) / uringChunks(c))
	want = map[string]uint64{"io_uring_setup": 1, "io_uring_enter": chains, "mmap": 2, "munmap": 2, "close": 1, "write": 1, "setsockopt": 2}
	slack = map[string]uint64{"io_uring_enter": chains + 2, "write": 0}
	switch name {
	case "uring":
		want["mmap"], want["munmap"] = 3, 3
	case "uring-splice":
		want["pipe2"], want["fcntl"], want["close"] = 1, 1, 3
		slack["fcntl"] = 1
	case "uring-zc":
		want["mmap"], want["munmap"], want["fstat"] = 3, 3, 1
		// Close waits for late notifications: one enter per wake-up.
		slack["io_uring_enter"] += uint64(n / c)
	}
	return want, slack
}

// uringOps is each io_uring path's op arithmetic: opcode -> ops per chunk.
var uringOps = map[string]map[string]uint64{
	"uring":        {"READ": 1, "SEND": 1},
	"uring-splice": {"SPLICE": 2},
	"uring-zc":     {"SEND_ZC": 1},
}

func skipNoUring(t *testing.T, name string) {
	t.Helper()
	if err := Supported(name); err != nil {
		if errors.Is(err, uring.ErrUnavailable) {
			t.Skipf("%v", err)
		}
		t.Fatal(err)
	}
}

// TestUringOps: one known transfer per io_uring path and chunk; the
// ledger's ops per opcode follow the arithmetic exactly (submitted =
// completed = chunks x ops per chunk, none failed, bytes = ops x chunk),
// as do its syscalls, and uring-zc's notifications cover every send and
// (loopback) say the kernel copied all of it.
func TestUringOps(t *testing.T) {
	for name, perChunk := range uringOps {
		for _, chunk := range testChunks {
			t.Run(fmt.Sprintf("%s/%d", name, chunk), func(t *testing.T) {
				skipNoUring(t, name)
				l := knownTransfer(t, name, chunk, func() {})
				checkArithmetic(t, name, chunk, l)
				k := uint64(knownN / chunk)
				for op, per := range perChunk {
					want := OpCount{Submitted: per * k, Completed: per * k, Bytes: per * knownN}
					if got := l.Ops[op]; got != want {
						t.Errorf("ledger %s: %+v, arithmetic says %+v", op, got, want)
					}
				}
				if len(l.Ops) != len(perChunk) {
					t.Errorf("ledger ops %v, want only %v", l.Ops, perChunk)
				}
				if name == "uring-zc" {
					if l.ZCBytes != knownN || l.ZCSends != k || l.ZCNotes != k {
						t.Errorf("uring-zc: zc bytes %d sends %d notes %d, want %d, %d, %d", l.ZCBytes, l.ZCSends, l.ZCNotes, knownN, k, k)
					}
					if l.ZCCopiedByte != l.ZCBytes || !slices.Contains(l.Notes, UringZCCopiedNote) {
						t.Errorf("uring-zc on loopback: copied %d of %d bytes, notes %q; want all copied and said", l.ZCCopiedByte, l.ZCBytes, l.Notes)
					}
				}
			})
		}
	}
}
