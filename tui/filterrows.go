package tui

import (
	"fmt"

	"github.com/copyscope/copyscope/metrics"
)

// filterRows are the demo's filter view: while a tag filter runs, each
// path's useful and wasted record bytes per second (wasted: sent whole by
// a by-reference path and dropped by the consumer) and the CPU seconds the
// broker's data thread and the consumer spend per useful GB. Without a
// filter no record has useful bytes and the rows are not shown.
func filterRows() []row {
	return []row{
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
