//go:build linux

package uring

import "unsafe"

// noOffset is -1 as a u64: "no offset" for SPLICE's pipe ends.
const noOffset = ^uint64(0)

// addr is the address of b's first byte. The caller keeps b alive (and,
// for Go memory, referenced) until the operation's completion: Go's
// collector does not move heap objects, but it frees unreferenced ones.
func addr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

// PrepRead makes sqe a READ of len(b) bytes from fd at off into b.
func (sqe *SQE) PrepRead(fd int, b []byte, off int64, userData uint64) {
	*sqe = SQE{Opcode: OpRead, Fd: int32(fd), Off: uint64(off), Addr: addr(b), Len: uint32(len(b)), UserData: userData}
}

// PrepSend makes sqe a SEND of b on socket fd with msg_flags.
func (sqe *SQE) PrepSend(fd int, b []byte, msgFlags uint32, userData uint64) {
	*sqe = SQE{Opcode: OpSend, Fd: int32(fd), Addr: addr(b), Len: uint32(len(b)), OpFlags: msgFlags, UserData: userData}
}

// PrepSendZC makes sqe a zero-copy SEND of b on socket fd, asking the
// notification CQE to report whether the kernel copied (SendZCReportUsage).
// b must stay untouched until the notification CQE (CQEFNotif) arrives.
func (sqe *SQE) PrepSendZC(fd int, b []byte, msgFlags uint32, userData uint64) {
	*sqe = SQE{Opcode: OpSendZC, Ioprio: SendZCReportUsage, Fd: int32(fd), Addr: addr(b), Len: uint32(len(b)), OpFlags: msgFlags, UserData: userData}
}

// PrepSplice makes sqe a SPLICE of n bytes from fdIn (at offIn, or from its
// position if offIn < 0: a pipe) to fdOut (at offOut, or none if < 0).
func (sqe *SQE) PrepSplice(fdIn int, offIn int64, fdOut int, offOut int64, n int, spliceFlags uint32, userData uint64) {
	in, out := noOffset, noOffset
	if offIn >= 0 {
		in = uint64(offIn)
	}
	if offOut >= 0 {
		out = uint64(offOut)
	}
	*sqe = SQE{Opcode: OpSplice, Fd: int32(fdOut), Off: out, Addr: in, Len: uint32(n), OpFlags: spliceFlags, SpliceFdIn: int32(fdIn), UserData: userData}
}

// PrepNop makes sqe a NOP: it completes with Res 0 and moves nothing.
func (sqe *SQE) PrepNop(userData uint64) {
	*sqe = SQE{Opcode: OpNop, UserData: userData}
}

// PrepWrite makes sqe a WRITE of b to fd at off.
func (sqe *SQE) PrepWrite(fd int, b []byte, off int64, userData uint64) {
	*sqe = SQE{Opcode: OpWrite, Fd: int32(fd), Off: uint64(off), Addr: addr(b), Len: uint32(len(b)), UserData: userData}
}
