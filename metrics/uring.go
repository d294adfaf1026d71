package metrics

import "fmt"

// UringOp is one io_uring opcode's operations for a subject, as the
// kernel's io_uring_submit_req and io_uring_complete tracepoints saw them.
type UringOp struct {
	Submitted uint64 `json:"submitted"`
	Completed uint64 `json:"completed"` // completion CQEs, SEND_ZC notifications excluded
	Failed    uint64 `json:"failed"`    // of those, with a negative result
	Bytes     uint64 `json:"bytes"`     // sum of the positive results
}

// UringOps are a subject's io_uring operations by opcode name ("READ",
// "SEND_ZC", ...). Opcodes with nothing counted are absent.
type UringOps map[string]UringOp

func (a UringOps) add(b UringOps) UringOps {
	if a == nil && b == nil {
		return nil
	}
	r := make(UringOps, len(a)+len(b))
	for _, m := range []UringOps{a, b} {
		for k, v := range m {
			x := r[k]
			r[k] = UringOp{x.Submitted + v.Submitted, x.Completed + v.Completed, x.Failed + v.Failed, x.Bytes + v.Bytes}
		}
	}
	return r
}

func (a UringOps) sub(prev UringOps) UringOps {
	if a == nil {
		return nil
	}
	r := make(UringOps, len(a))
	for k, v := range a {
		p := prev[k]
		d := UringOp{sat(v.Submitted, p.Submitted), sat(v.Completed, p.Completed), sat(v.Failed, p.Failed), sat(v.Bytes, p.Bytes)}
		if d != (UringOp{}) {
			r[k] = d
		}
	}
	return r
}

// uringSendVerdict names an io_uring sender's style when io_uring ops
// moved at least half of the delivered bytes, else "".
func uringSendVerdict(r Record, del uint64) string {
	ops := func(names ...string) uint64 {
		var n uint64
		for _, name := range names {
			n += r.UringOps[name].Bytes
		}
		return n
	}
	zc, send := min(ops("SEND_ZC", "SENDMSG_ZC"), del), min(ops("SEND", "SENDMSG", "WRITE", "WRITEV"), del)
	switch {
	case zc*2 >= del:
		copied := deref(r.ZerocopyCopiedBytes)
		why := ""
		if copied*10 >= zc*9 {
			why = " (loopback, or a device without zero-copy)"
		}
		return fmt.Sprintf("sends: %.0f%% by io_uring SEND_ZC, kernel copied %.0f%%%s", pct(zc, del), pct(copied, zc), why)
	case send*2 >= del && r.CopiesPerSentByte != nil:
		return fmt.Sprintf("sends: %.0f%% by io_uring SEND, %.1f copies per sent byte", pct(send, del), *r.CopiesPerSentByte)
	case ops("SPLICE", "TEE") > 0 && min(r.MovedInKernelByClass["socket"], del)*2 >= del:
		return fmt.Sprintf("sends: %.0f%% by reference through io_uring SPLICE", pct(min(r.MovedInKernelByClass["socket"], del), del))
	}
	return ""
}
