package metrics

import (
	"fmt"
	"sort"
	"strings"
)

// SortRecords orders records by bytes moved on sockets, sent plus received
// (largest first), then by kind and subject name, so tables and JSON
// streams are stable.
func SortRecords(rs []Record) {
	sort.SliceStable(rs, func(i, j int) bool {
		di := deref(rs[i].DeliveredBytes) + deref(rs[i].ReceivedBytes)
		dj := deref(rs[j].DeliveredBytes) + deref(rs[j].ReceivedBytes)
		if di != dj {
			return di > dj
		}
		if rs[i].Kind != rs[j].Kind {
			return rs[i].Kind < rs[j].Kind
		}
		return rs[i].Subject < rs[j].Subject
	})
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// faultAroundBytes is what one file-mapping fault event may map (the
// kernel's default fault_around_bytes): the most a fault can account for.
const faultAroundBytes = 64 << 10

// Verdict names a subject's transfer style in both directions, e.g.
// "sends: 100% by reference (sendfile/splice); receives: 2.0 copies per
// received byte (recv into user memory, write to a file or pipe)". A
// direction that moved nothing is left out; "idle" means neither moved a
// byte, "unknown" that copies were not measured.
func Verdict(r Record) string {
	if r.DeliveredBytes == nil || r.CopiedToUserByClass == nil || r.CopiedFromUserByCls == nil {
		return "unknown (copies need eBPF mode)"
	}
	var parts []string
	if s := SendVerdict(r); s != "" {
		parts = append(parts, s)
	}
	if s := ReceiveVerdict(r); s != "" {
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "idle (nothing sent or received on sockets)"
	}
	return strings.Join(parts, "; ")
}

// SendVerdict names how the subject's socket sends were made, or "" when
// it sent nothing or copies were not measured. "mmap" is named only with
// evidence of a file mapping: file-mapping faults that cover at least half
// of the bytes copied into sockets, never from the ratio alone.
func SendVerdict(r Record) string {
	del := deref(r.DeliveredBytes)
	if del == 0 || r.CopiesPerSentByte == nil {
		return ""
	}
	if s := uringSendVerdict(r, del); s != "" {
		return s
	}
	zc, zcCopied := deref(r.ZerocopyBytes), deref(r.ZerocopyCopiedBytes)
	if zc > 0 && zc*2 >= del {
		if zcCopied*10 >= zc*9 {
			return fmt.Sprintf("sends: MSG_ZEROCOPY, but the kernel copied %.0f%% anyway (loopback or unsupported device)", pct(zcCopied, zc))
		}
		return fmt.Sprintf("sends: %.0f%% MSG_ZEROCOPY, %.0f%% of it copied by the kernel", pct(zc, del), pct(zcCopied, zc))
	}
	byRef := min(r.MovedInKernelByClass["socket"], del)
	cp := *r.CopiesPerSentByte
	switch {
	case byRef*2 >= del:
		return fmt.Sprintf("sends: %.0f%% by reference (sendfile/splice)", pct(byRef, del))
	case cp >= 1.5:
		return fmt.Sprintf("sends: %.1f copies per sent byte (read into user memory, write from it)", cp)
	case cp >= 0.5:
		if deref(r.FileFaults)*faultAroundBytes*2 >= r.CopiedFromUserByCls["socket"] {
			return fmt.Sprintf("sends: %.1f copies per sent byte (write from a file mapping, mmap)", cp)
		}
		return fmt.Sprintf("sends: %.1f copies per sent byte (write from user memory)", cp)
	}
	return fmt.Sprintf("sends: %.2f copies per sent byte", cp)
}

// ReceiveVerdict names how the subject took bytes off sockets, or "" when
// it received nothing or copies were not measured.
func ReceiveVerdict(r Record) string {
	recv := deref(r.ReceivedBytes)
	if recv == 0 || r.CopiesPerReceivedByte == nil {
		return ""
	}
	intoUser := min(r.CopiedToUserByClass["socket"], recv)
	cp := *r.CopiesPerReceivedByte
	switch {
	case (recv-intoUser)*2 >= recv:
		return fmt.Sprintf("receives: %.0f%% by reference (splice)", pct(recv-intoUser, recv))
	case cp >= 1.5:
		return fmt.Sprintf("receives: %.1f copies per received byte (recv into user memory, write to a file or pipe)", cp)
	case cp >= 0.5:
		return fmt.Sprintf("receives: %.1f copies per received byte (recv into user memory)", cp)
	}
	return fmt.Sprintf("receives: %.2f copies per received byte", cp)
}

func pct(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
