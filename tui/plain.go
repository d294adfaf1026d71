package tui

import (
	"fmt"
	"strings"

	"github.com/copyscope/copyscope/metrics"
)

// PlainLines formats a sample for a non-terminal: one line per subject,
// the same figures as the columns view, "~" marking /proc estimates.
func PlainLines(s Sample) []string {
	out := make([]string, 0, len(s.Records)+1)
	for _, r := range s.Records {
		var b strings.Builder
		est := ""
		if r.Mode == metrics.ModeProc {
			est = "~"
		}
		fmt.Fprintf(&b, "%s %-5s %-10s", r.TS.Format("15:04:05"), string(r.Mode), r.Subject)
		if r.DeliveredBytesPerS != nil {
			fmt.Fprintf(&b, " %s%-11s", est, rateStr(*r.DeliveredBytesPerS))
		}
		if r.CPUNs != nil && r.IntervalS > 0 {
			fmt.Fprintf(&b, " cpu %s%.1f%%", est, float64(*r.CPUNs)/1e9/r.IntervalS*100)
		}
		if r.CPUNsPerGB != nil {
			fmt.Fprintf(&b, " %.3fs/GB", *r.CPUNsPerGB/1e9)
		}
		if r.Syscalls != nil && val(r.DeliveredBytes) > 0 {
			fmt.Fprintf(&b, " syscalls/MB %s", si(float64(*r.Syscalls)/(float64(*r.DeliveredBytes)/1e6)))
		}
		if r.ModeSwitches != nil && r.IntervalS > 0 {
			fmt.Fprintf(&b, " modesw/s %s", si(float64(*r.ModeSwitches)/r.IntervalS))
		}
		if t, _, ok := ctxCell(r); ok {
			fmt.Fprintf(&b, " ctx %s%s", est, t)
		}
		if c, ok := s.Consumers[r.Subject]; ok {
			if t, _, ok := ctxCell(c); ok {
				fmt.Fprintf(&b, " consumer-ctx %s%s", est, t)
			}
		}
		if r.CopyAmplification != nil {
			fmt.Fprintf(&b, " copies/B %.2f", *r.CopyAmplification)
		}
		if r.PageFaults != nil && r.IntervalS > 0 {
			fmt.Fprintf(&b, " faults/s %s%s", est, si(float64(*r.PageFaults)/r.IntervalS))
		}
		if zc := val(r.ZerocopyBytes); zc > 0 {
			if cp := val(r.ZerocopyCopiedBytes); cp > 0 {
				fmt.Fprintf(&b, " WARNING: kernel copied %.0f%% of MSG_ZEROCOPY bytes", 100*float64(cp)/float64(zc))
			} else {
				b.WriteString(" zerocopy 0% copied")
			}
		}
		out = append(out, b.String())
	}
	if br := s.Broker; br != nil || s.Status != "" {
		line := "broker"
		if br != nil {
			line += fmt.Sprintf(" produce %s LEO %d segments %d", rateStr(br.ProduceBytesPerS), br.LogEndOffset, br.Segments)
		}
		if s.Status != "" {
			line += " · " + s.Status
		}
		out = append(out, line)
	}
	return out
}
