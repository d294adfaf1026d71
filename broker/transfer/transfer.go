// Package transfer moves Fetch responses from segment files to TCP sockets
// over one of several transfer paths (read+write, mmap, sendfile, splice,
// MSG_ZEROCOPY). One file per path, all behind the Path interface; each path
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

	Chunk    int      // span bytes per syscall this path was built with
	PipeSize int      // splice: the pipe's capacity after F_SETPIPE_SZ
	ZCCopied uint64   // zerocopy: notifications flagged SO_EE_CODE_ZEROCOPY_COPIED
	Notes    []string // fallbacks taken (a denied pipe size, ...), for every output
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
