package metrics

import (
	"strings"
	"testing"
)

func TestUringVerdict(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	f := func(v float64) *float64 { return &v }
	base := func(ops UringOps, zc, zcCopied uint64, moved uint64, copies float64) Record {
		return Record{DeliveredBytes: u(1000), CopiesPerSentByte: f(copies), UringOps: ops,
			ZerocopyBytes: u(zc), ZerocopyCopiedBytes: u(zcCopied),
			CopiedToUserByClass: map[string]uint64{}, CopiedFromUserByCls: map[string]uint64{},
			MovedInKernelByClass: map[string]uint64{"socket": moved}}
	}
	for _, c := range []struct {
		name string
		r    Record
		want string
	}{
		{"send_zc loopback", base(UringOps{"SEND_ZC": {Bytes: 1000}}, 1000, 1000, 0, 0), "sends: 100% by io_uring SEND_ZC, kernel copied 100% (loopback"},
		{"send_zc real", base(UringOps{"SEND_ZC": {Bytes: 1000}}, 1000, 0, 0, 0), "sends: 100% by io_uring SEND_ZC, kernel copied 0%"},
		{"send", base(UringOps{"READ": {Bytes: 1000}, "SEND": {Bytes: 1000}}, 0, 0, 0, 2), "sends: 100% by io_uring SEND, 2.0 copies"},
		{"splice", base(UringOps{"SPLICE": {Bytes: 2000}}, 0, 0, 1000, 0), "by reference through io_uring SPLICE"},
		{"few ops", base(UringOps{"SEND": {Bytes: 10}}, 0, 0, 1000, 0), "sends: 100% by reference (sendfile/splice)"},
		{"no ops", base(nil, 0, 0, 0, 2), "sends: 2.0 copies per sent byte"},
	} {
		if got := SendVerdict(c.r); !strings.HasPrefix(got, c.want) && !strings.Contains(got, c.want) {
			t.Errorf("%s: verdict %q, want %q", c.name, got, c.want)
		}
	}
}

func TestUringOpsAddSub(t *testing.T) {
	a := UringOps{"READ": {1, 1, 0, 10}}
	b := UringOps{"READ": {2, 2, 1, 20}, "SEND": {1, 1, 0, 5}}
	sum := a.add(b)
	if sum["READ"] != (UringOp{3, 3, 1, 30}) || sum["SEND"] != (UringOp{1, 1, 0, 5}) {
		t.Fatalf("add: %v", sum)
	}
	d := sum.sub(a)
	if d["READ"] != (UringOp{2, 2, 1, 20}) || len(d) != 2 {
		t.Fatalf("sub: %v", d)
	}
	if z := a.sub(a); len(z) != 0 {
		t.Fatalf("sub of itself: %v, want empty", z)
	}
}
