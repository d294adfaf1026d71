package tui

import (
	"fmt"

	"github.com/copyscope/copyscope/metrics"
)

// filterRows are the demo's dead letters (per path: sent by reference per
// second, and the bytes on the socket by reference and re-produced) and
// its filter view: while a tag filter runs, each
// path's useful and wasted record bytes per second (wasted: sent whole by
// a by-reference path and dropped by the consumer) and the CPU seconds the
// broker's data thread and the consumer spend per useful GB. Without a
// filter no record has useful bytes and the rows are not shown.
func (m columnsModel) filterRows() []row {
	return []row{
		{label: "dead letters", onlyWhen: true, cell: func(c cell, w int) (string, float64, bool) {
			r, ok := m.sample.DeadLetters[c.rec.Subject]
			if !ok {
				return na, 0, false
			}
			long := fmt.Sprintf("ref %s/s %sB/s, copy %sB/s", metrics.SI(r.RefsPerS), metrics.SI(r.RefBytesPerS), metrics.SI(r.CopyBytesPerS))
			return firstFit(w, long, "ref "+metrics.SI(r.RefBytesPerS)+"B cp "+metrics.SI(r.CopyBytesPerS)+"B", "ref "+metrics.SI(r.RefBytesPerS)+" cp "+metrics.SI(r.CopyBytesPerS)), 0, true
		}},
		{label: "useful|waste", better: +1, onlyWhen: true, cell: func(c cell, w int) (string, float64, bool) {
			u, ok := c.perS(c.rec.UsefulBytes)
			if !ok {
				return na, 0, false
			}
			wa, _ := c.perS(c.rec.WastedBytes)
			return firstFit(w, metrics.SI(u)+" | "+metrics.SI(wa), metrics.SI(u)+"|"+metrics.SI(wa)), u, true
		}},
		{label: "s/useful GB", better: -1, onlyWhen: true, cell: func(c cell, w int) (string, float64, bool) {
			if c.rec.UsefulBytes == nil || *c.rec.UsefulBytes == 0 || c.rec.CPUNs == nil {
				return na, 0, false
			}
			gb := float64(*c.rec.UsefulBytes) / 1e9
			b := float64(*c.rec.CPUNs) / 1e9 / gb
			if c.cons == nil || c.cons.CPUNs == nil {
				return fmt.Sprintf("%.2f", b), b, true
			}
			cs := float64(*c.cons.CPUNs) / 1e9 / gb
			return firstFit(w, fmt.Sprintf("%.2f+%.2f", b, cs), fmt.Sprintf("%.1f+%.1f", b, cs)), b + cs, true
		}},
	}
}
