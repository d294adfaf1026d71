package metrics

import (
	"fmt"
	"sort"
)

// SortRecords orders records by delivered bytes (largest first), then by
// kind and subject name, so tables and JSON streams are stable.
func SortRecords(rs []Record) {
	sort.SliceStable(rs, func(i, j int) bool {
		di, dj := deref(rs[i].DeliveredBytes), deref(rs[j].DeliveredBytes)
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

// Verdict names a subject's transfer style from one interval's record, e.g.
// "socket sends: 99% by reference (sendfile/splice)" or
// "2.0 CPU copies per delivered byte (read+write)". It returns "idle" when
// nothing was delivered and "unknown" when copies were not measured.
func Verdict(r Record) string {
	del := deref(r.DeliveredBytes)
	if r.DeliveredBytes == nil || r.CopiedToUserBytes == nil || r.CopiedFromUserBytes == nil {
		return "unknown (copies need eBPF mode)"
	}
	if del == 0 {
		return "idle (nothing delivered to sockets)"
	}
	zc, zcCopied := deref(r.ZerocopyBytes), deref(r.ZerocopyCopiedBytes)
	if zc > 0 && zc*2 >= del {
		if zcCopied*10 >= zc*9 {
			return fmt.Sprintf("MSG_ZEROCOPY, but the kernel copied %.0f%% anyway (loopback or unsupported device)", pct(zcCopied, zc))
		}
		return fmt.Sprintf("socket sends: %.0f%% MSG_ZEROCOPY, %.0f%% of it copied by the kernel", pct(zc, del), pct(zcCopied, zc))
	}
	var byRef uint64
	if r.MovedInKernelByClass != nil {
		byRef = r.MovedInKernelByClass["socket"]
	} else if r.MovedInKernelBytes != nil {
		byRef = *r.MovedInKernelBytes
	}
	if byRef > del {
		byRef = del
	}
	amp := 0.0
	if r.CopyAmplification != nil {
		amp = *r.CopyAmplification
	}
	switch {
	case byRef*2 >= del:
		return fmt.Sprintf("socket sends: %.0f%% by reference (sendfile/splice)", pct(byRef, del))
	case amp >= 1.5:
		return fmt.Sprintf("%.1f CPU copies per delivered byte (read+write)", amp)
	case amp >= 0.5:
		faults := deref(r.FileFaults)
		if faults > 0 || deref(r.CopiedToUserBytes)*4 < del {
			return fmt.Sprintf("%.1f CPU copies per delivered byte (mmap+write)", amp)
		}
		return fmt.Sprintf("%.1f CPU copies per delivered byte", amp)
	default:
		return fmt.Sprintf("%.2f CPU copies per delivered byte", amp)
	}
}

func pct(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
