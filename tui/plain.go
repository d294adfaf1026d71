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
			fmt.Fprintf(&b, " %s%-11s", est, metrics.SIRate(*r.DeliveredBytesPerS))
		}
		if v, ok := r.CPUPercent(); ok {
			fmt.Fprintf(&b, " cpu %s%.1f%%", est, v)
		}
		if v, ok := r.CPUSecondsPerGB(); ok {
			fmt.Fprintf(&b, " %.3fs/GB", v)
		}
		if v, ok := r.SyscallsPerMB(); ok {
			fmt.Fprintf(&b, " syscalls/MB %s", metrics.SI(v))
		}
		if v, ok := r.PerSecond(r.ModeSwitches); ok {
			fmt.Fprintf(&b, " modesw/s %s", metrics.SI(v))
		}
		if t, _, ok := ctxCell(r); ok {
			fmt.Fprintf(&b, " ctx %s%s", est, t)
		}
		if c, ok := s.Consumers[r.Subject]; ok {
			if t, _, ok := ctxCell(c); ok {
				fmt.Fprintf(&b, " consumer-ctx %s%s", est, t)
			}
		}
		if v, ok := r.SentCopiesPerByte(); ok {
			fmt.Fprintf(&b, " copies/B %.2f", v)
		}
		if v, ok := r.PerSecond(r.PageFaults); ok {
			fmt.Fprintf(&b, " faults/s %s%s", est, metrics.SI(v))
		}
		if p, ok := r.ZerocopyCopiedPercent(); ok {
			if p > 0 {
				fmt.Fprintf(&b, " WARNING: kernel copied %.0f%% of MSG_ZEROCOPY bytes", p)
			} else {
				b.WriteString(" zerocopy 0% copied")
			}
		}
		out = append(out, b.String())
	}
	if br := s.Broker; br != nil || s.Status != "" {
		line := "broker"
		if br != nil {
			line += fmt.Sprintf(" produce %s LEO %d segments %d", metrics.SIRate(br.ProduceBytesPerS), br.LogEndOffset, br.Segments)
		}
		if s.Status != "" {
			line += " · " + s.Status
		}
		out = append(out, line)
	}
	return out
}
