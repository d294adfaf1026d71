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
	if *r.DeliveredBytesPerS != 2000 || *r.CopiesPerSentByte != 2 {
		t.Fatalf("rate %v copies per sent byte %v", *r.DeliveredBytesPerS, *r.CopiesPerSentByte)
	}
	if r.CopiesPerReceivedByte != nil || r.Interval != "" {
		t.Fatalf("nothing received, yet copies per received byte %v; interval %q", *r.CopiesPerReceivedByte, r.Interval)
	}
	tot := Totals(Snapshot{Time: t0.Add(-time.Second), Mode: ModeEBPF}, cur)
	if len(tot) != 1 || tot[0].Interval != "total" || *tot[0].DeliveredBytes != 3100 || tot[0].IntervalS != 2.5 {
		t.Fatalf("totals %+v", tot)
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
	for _, absent := range []string{"copied_to_user_bytes", "page_faults", "zerocopy_bytes", "copies_per_sent_byte",
		"copies_per_received_byte", "delivered_bytes", "received_bytes", "interval"} {
		if strings.Contains(js, `"`+absent+`"`) {
			t.Errorf("%s present in proc-mode record: %s", absent, js)
		}
	}
	for _, present := range []string{`"syscalls":5`, `"ctx_switches_voluntary":0`, `"cpu_ns":0`, `"estimate":true`, `"mode":"proc"`} {
		if !strings.Contains(js, present) {
			t.Errorf("%s missing: %s", present, js)
		}
	}
	if v := Verdict(r); !strings.HasPrefix(v, "unknown") {
		t.Errorf("verdict without copies %q, want unknown", v)
	}
}

// TestDirections checks the two flows and their verdicts against the
// arithmetic of workloads whose syscalls are known: each case states what
// the program does per byte and what the counters must then hold.
func TestDirections(t *testing.T) {
	const n = 1 << 20
	cases := []struct {
		name             string
		c                Counters
		sent, recv       float64 // copies per sent / received byte; -1: absent
		moved            uint64  // moved_in_kernel_bytes
		verdict, without string
	}{
		// sendfile(sock, file): by reference.
		{"sendfile", Counters{DeliveredBytes: n, MovedInKernel: ByClass{ClassSocket: n}},
			0, -1, n, "sends: 100% by reference (sendfile/splice)", "receives"},
		// splice(file, pipe) + splice(pipe, sock): two legs, one delivery.
		{"splice sender", Counters{DeliveredBytes: n, MovedInKernel: ByClass{ClassPipe: n, ClassSocket: n}},
			0, -1, n, "sends: 100% by reference", "receives"},
		// read(file) + write(sock).
		{"read+write", Counters{DeliveredBytes: n, CopiedToUser: ByClass{ClassFile: n}, CopiedFromUser: ByClass{ClassSocket: n}},
			2, -1, 0, "sends: 2.0 copies per sent byte (read into user memory", "mmap"},
		// redis: write(sock) of heap values, no file mapping.
		{"heap write", Counters{DeliveredBytes: n, CopiedFromUser: ByClass{ClassSocket: n}},
			1, -1, 0, "sends: 1.0 copies per sent byte (write from user memory)", "mmap"},
		// write(sock) from a mapping that faulted in: n/64KiB fault-around events.
		{"mmap+write", Counters{DeliveredBytes: n, CopiedFromUser: ByClass{ClassSocket: n}, FileFaults: n / faultAroundBytes},
			1, -1, 0, "sends: 1.0 copies per sent byte (write from a file mapping, mmap)", "receives"},
		// fan-out: one read(file), five write(sock).
		{"fan-out", Counters{DeliveredBytes: 5 * n, CopiedToUser: ByClass{ClassFile: n}, CopiedFromUser: ByClass{ClassSocket: 5 * n}},
			1.2, -1, 0, "sends: 1.2 copies per sent byte (write from user memory)", "mmap"},
		// iperf3 server: recv 512 MiB, send 37 control bytes.
		{"receiver", Counters{DeliveredBytes: 37, ReceivedBytes: 512 * n, CopiedToUser: ByClass{ClassSocket: 512 * n}, CopiedFromUser: ByClass{ClassSocket: 37}},
			1, 1, 0, "receives: 1.0 copies per received byte (recv into user memory)", "idle"},
		// a receiver that sends nothing is never idle.
		{"pure receiver", Counters{ReceivedBytes: n, CopiedToUser: ByClass{ClassSocket: n}},
			-1, 1, 0, "receives: 1.0 copies per received byte", "idle"},
		// broker: kcat producers (recv + pwrite) and sendfile consumers at once.
		{"broker", Counters{DeliveredBytes: 3 * n, ReceivedBytes: n, CopiedToUser: ByClass{ClassSocket: n},
			CopiedFromUser: ByClass{ClassFile: n}, MovedInKernel: ByClass{ClassSocket: 3 * n}},
			0, 2, 3 * n, "sends: 100% by reference (sendfile/splice); receives: 2.0 copies per received byte (recv into user memory, write to a file or pipe)", ""},
		// haproxy with splice: sock->pipe->sock both ways.
		{"splice proxy", Counters{DeliveredBytes: n, ReceivedBytes: n, MovedInKernel: ByClass{ClassPipe: n, ClassSocket: n}},
			0, 0, n, "sends: 100% by reference (sendfile/splice); receives: 100% by reference (splice)", "copies"},
		// haproxy without splice: recv into a buffer, send from it.
		{"copying proxy", Counters{DeliveredBytes: n, ReceivedBytes: n, CopiedToUser: ByClass{ClassSocket: n}, CopiedFromUser: ByClass{ClassSocket: n}},
			1, 1, 0, "sends: 1.0 copies per sent byte (write from user memory); receives: 1.0 copies per received byte (recv into user memory)", "mmap"},
		// a terminal's bytes belong to neither flow.
		{"tty only", Counters{CopiedFromUser: ByClass{ClassOther: n}},
			-1, -1, 0, "idle (nothing sent or received on sockets)", "copies"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Measured = FAll
			r := FromDelta(time.Unix(0, 0), time.Second, ModeEBPF, Subject{KindProcess, tc.name}, tc.c)
			check := func(what string, got *float64, want float64) {
				t.Helper()
				switch {
				case want < 0 && got != nil:
					t.Errorf("%s = %v, want absent", what, *got)
				case want >= 0 && got == nil:
					t.Errorf("%s absent, want %v", what, want)
				case want >= 0 && *got != want:
					t.Errorf("%s = %v, want %v", what, *got, want)
				}
			}
			check("copies_per_sent_byte", r.CopiesPerSentByte, tc.sent)
			check("copies_per_received_byte", r.CopiesPerReceivedByte, tc.recv)
			if *r.MovedInKernelBytes != tc.moved {
				t.Errorf("moved_in_kernel_bytes = %d, want %d", *r.MovedInKernelBytes, tc.moved)
			}
			v := Verdict(r)
			if !strings.Contains(v, tc.verdict) || tc.without != "" && strings.Contains(v, tc.without) {
				t.Errorf("verdict %q, want it to contain %q and not %q", v, tc.verdict, tc.without)
			}
		})
	}
}

func TestZerocopyVerdict(t *testing.T) {
	c := Counters{Measured: FAll, DeliveredBytes: 1000, ZerocopyBytes: 1000, ZerocopyCopiedBytes: 1000}
	r := FromDelta(time.Unix(0, 0), time.Second, ModeEBPF, Subject{KindPath, "zerocopy"}, c)
	if v := Verdict(r); !strings.Contains(v, "sends: MSG_ZEROCOPY, but the kernel copied 100%") {
		t.Errorf("verdict %q", v)
	}
}
