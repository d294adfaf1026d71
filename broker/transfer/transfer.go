// Package transfer moves Fetch responses from segment files to TCP sockets
// over one of several transfer paths (read+write, mmap, sendfile, splice,
// MSG_ZEROCOPY, and io_uring READ+SEND, SPLICE and SEND_ZC). One file per
// path, all behind the Path interface; each path
// keeps a ledger of the bytes it sent and the syscalls it made, so tests and
// probes can check the kernel's counts against the path's own arithmetic.
//
// For N span bytes in chunks of C a Send makes, on the caller's thread:
// read 2N/C (pread64 + write), mmap N/C writes, sendfile N/C, splice 2N/C,
// zerocopy N/C sendmsg plus error-queue recvmsg (one per MiB and per
// notification); plus a constant few per response: framing write/writev,
// TCP_CORK on and off for responses longer than a chunk, fstat/mmap of a
// segment not mapped yet. On Linux 6.18, /proc/thread-self/io counts
// pread64/read in syscr, write/writev in syscw, sendfile in both, and
// splice, sendmsg, recvmsg not at all (see syscalls_test.go).
//
// The io_uring paths (uring, uring-splice, uring-zc) make no syscall per
// chunk: with B = uringChunks(C) chunks per chain (2 MiB worth, 1..32),
// a Send makes ceil(N/C/B) io_uring_enter calls per span (one more per
// chain when a wait is cut short) and the kernel runs, per chunk, uring:
// one READ and one SEND (2 copies per byte); uring-splice: two SPLICEs,
// file->pipe and pipe->socket (0 copies; run by the kernel's iou-wrk
// threads); uring-zc: one SEND_ZC, completed twice (the send, then its
// notification; on loopback every notification says the kernel copied).
// Each ring costs io_uring_setup, 2 mmaps (IORING_FEAT_SINGLE_MMAP) and at
// Close 2 munmaps and a close; uring maps one chunk buffer, uring-splice
// makes a pipe as splice does, uring-zc maps the segment as zerocopy does
// and waits in Close for the last notifications (one io_uring_enter per
// wake-up). The ledger's Ops count these ops by opcode exactly as the
// kernel's io_uring tracepoints see them; io_uring ops bypass the
// vfs_read/vfs_write counters of /proc/thread-self/io.
package transfer

// Span is a region of an open file (a segment) to move to a socket.
type Span struct {
	Fd  int   // open file descriptor of the segment
	Off int64 // byte position in the file
	Len int64 // number of bytes
}

// Part is one piece of a response, in order: either in-memory bytes
// (protocol framing written by the broker) or a file span (record bytes the
// broker never touches). Exactly one of Bytes and Span.Len is non-empty.
type Part struct {
	Bytes []byte
	Span  Span
}

// Ledger is a path's own account of what it did on its thread.
type Ledger struct {
	BytesSent    uint64            // bytes put onto the socket, framing included
	SpanBytes    uint64            // of those, bytes that came from file spans
	Calls        map[string]uint64 // syscalls made, by name ("pread64", "write", "sendfile", ...)
	ZCSends      uint64            // zerocopy: sendmsg calls with MSG_ZEROCOPY
	ZCNotes      uint64            // zerocopy: completion notifications reaped
	ZCBytes      uint64            // zerocopy: bytes sent with MSG_ZEROCOPY
	ZCCopiedByte uint64            // zerocopy: of those, bytes the kernel reported as copied

	Chunk    int    // span bytes per syscall this path was built with
	PipeSize int    // splice: the pipe's capacity after F_SETPIPE_SZ
	ZCCopied uint64 // zerocopy: notifications flagged SO_EE_CODE_ZEROCOPY_COPIED (uring-zc: IORING_NOTIF_USAGE_ZC_COPIED)
	// Ops counts io_uring operations by opcode name ("READ", "SEND",
	// "SEND_ZC", "SPLICE"); nil for the paths that make none.
	Ops   map[string]OpCount
	Notes []string // fallbacks taken (a denied pipe size, ...), for every output
}

// Path moves response parts to a connected, blocking TCP socket. A Path
// value belongs to one connection and is used from that connection's
// locked OS thread only.
type Path interface {
	// Name is the path's name as used on the command line and in records.
	Name() string
	// Send writes parts to sock in order and returns the bytes written.
	Send(sock int, parts []Part) (int64, error)
	// Ledger returns a copy of the path's counts so far.
	Ledger() Ledger
	// Close releases buffers, pipes and mappings; for zerocopy it first
	// waits for every outstanding completion.
	Close() error
}
