package metrics

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
