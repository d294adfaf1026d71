package metrics

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRecordsUseMeasuredInterval(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s := Subject{KindPath, "read"}
	prev := Snapshot{Time: t0, Mode: ModeEBPF, Subjects: map[Subject]Counters{s: {Measured: FAll, DeliveredBytes: 100, Syscalls: 10}}}
	cur := Snapshot{Time: t0.Add(1500 * time.Millisecond), Mode: ModeEBPF, Subjects: map[Subject]Counters{s: {
		Measured: FAll, DeliveredBytes: 3100, Syscalls: 70,
		CopiedToUser: ByClass{ClassFile: 3000}, CopiedFromUser: ByClass{ClassSocket: 3000},
		SyscallsByName: map[string]uint64{"read": 30, "write": 30},
	}}}
	rs := Records(prev, cur)
	if len(rs) != 1 {
		t.Fatalf("got %d records", len(rs))
	}
	r := rs[0]
	if r.IntervalS != 1.5 || *r.DeliveredBytes != 3000 || *r.Syscalls != 60 || *r.ModeSwitches != 120 {
		t.Fatalf("bad deltas: %+v", r)
	}
	if *r.DeliveredBytesPerS != 2000 || *r.CopyAmplification != 2 {
		t.Fatalf("rate %v amp %v", *r.DeliveredBytesPerS, *r.CopyAmplification)
	}
	if got := Verdict(r); !strings.Contains(got, "2.0 CPU copies") || !strings.Contains(got, "read+write") {
		t.Fatalf("verdict %q", got)
	}
}

func TestUnmeasuredFieldsAreAbsent(t *testing.T) {
	d := Counters{Measured: FSyscalls | FCtxSwitches | FCPU, Syscalls: 5}
	r := FromDelta(time.Unix(0, 0), time.Second, ModeProc, Subject{KindThread, "42"}, d)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	for _, absent := range []string{"copied_to_user_bytes", "page_faults", "zerocopy_bytes", "copy_amplification", "delivered_bytes"} {
		if strings.Contains(js, `"`+absent+`"`) {
			t.Errorf("%s present in proc-mode record: %s", absent, js)
		}
	}
	for _, present := range []string{`"syscalls":5`, `"ctx_switches_voluntary":0`, `"cpu_ns":0`, `"estimate":true`, `"mode":"proc"`} {
		if !strings.Contains(js, present) {
			t.Errorf("%s missing: %s", present, js)
		}
	}
}

func TestVerdicts(t *testing.T) {
	mk := func(del uint64, to, from, moved ByClass, zc, zcc uint64) Record {
		c := Counters{Measured: FAll, DeliveredBytes: del, CopiedToUser: to, CopiedFromUser: from, MovedInKernel: moved, ZerocopyBytes: zc, ZerocopyCopiedBytes: zcc}
		return FromDelta(time.Unix(0, 0), time.Second, ModeEBPF, Subject{KindPath, "x"}, c)
	}
	cases := []struct {
		name string
		r    Record
		want string
	}{
		{"sendfile", mk(1000, ByClass{}, ByClass{}, ByClass{ClassSocket: 990}, 0, 0), "99% by reference"},
		{"mmap", mk(1000, ByClass{}, ByClass{ClassSocket: 1000}, ByClass{}, 0, 0), "1.0 CPU copies per delivered byte (mmap+write)"},
		{"zerocopy", mk(1000, ByClass{}, ByClass{}, ByClass{}, 1000, 1000), "kernel copied 100%"},
		{"idle", mk(0, ByClass{}, ByClass{}, ByClass{}, 0, 0), "idle"},
	}
	for _, c := range cases {
		if got := Verdict(c.r); !strings.Contains(got, c.want) {
			t.Errorf("%s: verdict %q, want it to contain %q", c.name, got, c.want)
		}
	}
}
