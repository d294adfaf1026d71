package tui

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/copyscope/copyscope/metrics"
)

// minColWidth is the narrowest a subject column gets before columns scroll.
const minColWidth = 12

// maxColWidth keeps columns compact on very wide terminals.
const maxColWidth = 30

// totals are one subject's byte counts since the last reset, for the copy
// diagram's arrows.
type totals struct {
	diskRead, toUser, fromUser, moved, zc, zcCopied, fileFaults uint64
	haveCopies, haveDisk, haveZC                                bool
}

func (t *totals) add(r metrics.Record) {
	if r.DiskReadBytes != nil {
		t.haveDisk = true
		t.diskRead += *r.DiskReadBytes
	}
	if r.CopiedToUserBytes != nil && r.CopiedFromUserBytes != nil && r.MovedInKernelBytes != nil {
		t.haveCopies = true
		t.toUser += classOr(r.CopiedToUserByClass, "file", *r.CopiedToUserBytes)
		t.fromUser += classOr(r.CopiedFromUserByCls, "socket", *r.CopiedFromUserBytes)
		t.moved += classOr(r.MovedInKernelByClass, "socket", *r.MovedInKernelBytes)
	}
	if r.ZerocopyBytes != nil {
		t.haveZC = true
		t.zc += *r.ZerocopyBytes
		t.zcCopied += val(r.ZerocopyCopiedBytes)
	}
	if r.FileFaults != nil {
		t.fileFaults += *r.FileFaults
	}
}

// classOr returns the byte count of one fd class when copies are broken
// down by class, else the total.
func classOr(m map[string]uint64, class string, total uint64) uint64 {
	if m == nil {
		return total
	}
	return m[class]
}

func val(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// subject is everything the columns view keeps about one subject.
type subject struct {
	hist     *ring
	tot      totals
	cur      metrics.Record
	cons     *metrics.Record
	held     *metrics.Record // the interval of peak throughput (race mode shows it)
	heldCons *metrics.Record
	seen     bool
}

// columnsModel is the main view: one column per subject, one row per metric
// and a copy diagram per subject.
type columnsModel struct {
	c        *common
	subjects map[string]*subject
	order    []string // subjects of the latest sample, in record order
	offset   int      // first visible column when they do not all fit
	sample   Sample
	samples  int
}

func newColumnsModel(c *common) columnsModel {
	return columnsModel{c: c, subjects: map[string]*subject{}}
}

// apply folds one sample into the view's state.
func (m *columnsModel) apply(s Sample) {
	m.sample = s
	m.samples++
	m.order = m.order[:0]
	for _, r := range s.Records {
		st := m.subjects[r.Subject]
		if st == nil {
			st = &subject{hist: newRing(m.c.cfg.History)}
			m.subjects[r.Subject] = st
		}
		m.order = append(m.order, r.Subject)
		st.seen = true
		st.cur = r
		st.cons = nil
		if cr, ok := s.Consumers[r.Subject]; ok {
			st.cons = &cr
		}
		st.hist.push(fval(r.DeliveredBytesPerS))
		st.tot.add(r)
		if val(r.DeliveredBytes) > 0 && (st.held == nil || fval(r.DeliveredBytesPerS) > fval(st.held.DeliveredBytesPerS)) {
			rc := r
			st.held, st.heldCons = &rc, st.cons
		}
	}
}

// forgetPeaks drops the held peak records (their chunk or mode is gone).
func (m *columnsModel) forgetPeaks() {
	for _, st := range m.subjects {
		st.held, st.heldCons = nil, nil
	}
}

// reset forgets histories, totals and held peaks; the latest values stay
// on screen until the next sample.
func (m *columnsModel) reset() {
	for _, st := range m.subjects {
		st.hist = newRing(m.c.cfg.History)
		st.tot = totals{haveCopies: st.tot.haveCopies, haveDisk: st.tot.haveDisk, haveZC: st.tot.haveZC}
		st.held, st.heldCons = nil, nil
	}
}

func fval(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// visible returns the subjects to show, in display order: the demo's paths
// in key order, then any other subject in the latest sample's order.
func (m columnsModel) visible() []string {
	var out []string
	listed := map[string]bool{}
	for _, s := range m.c.cfg.Subjects {
		listed[s] = true
		if m.c.isEnabled(s) {
			out = append(out, s)
		}
	}
	var extra []string
	for _, s := range m.order {
		if !listed[s] {
			extra = append(extra, s)
		}
	}
	// Busiest first: delivered bytes, then CPU time (watch's subjects).
	key := func(name string) (uint64, uint64) {
		st := m.subjects[name]
		if st == nil {
			return 0, 0
		}
		return val(st.cur.DeliveredBytes), val(st.cur.CPUNs)
	}
	sort.SliceStable(extra, func(i, j int) bool {
		di, ci := key(extra[i])
		dj, cj := key(extra[j])
		if di != dj {
			return di > dj
		}
		return ci > cj
	})
	return append(out, extra...)
}

// layout returns the label width, column width and the number of columns
// that fit in the terminal width.
func (m columnsModel) layout(n int) (labelW, colW, fits int) {
	labelW = 12
	if m.c.width >= 120 {
		labelW = 13
	}
	avail := m.c.width - labelW
	if n == 0 {
		return labelW, 0, 0
	}
	colW = avail / n
	fits = n
	if colW < minColWidth {
		fits = max(1, avail/minColWidth)
		colW = avail / fits
	}
	return labelW, min(colW, maxColWidth), fits
}

// cell is what a row sees of one subject.
type cell struct {
	rec  metrics.Record
	cons *metrics.Record
	held bool // rec is the subject's peak interval, not the current one
	st   *subject
}

func (c cell) active() bool { return val(c.rec.DeliveredBytes) > 0 }

func (c cell) perS(p *uint64) (float64, bool) { return c.rec.PerSecond(p) }

// row is one metric across the subjects: cell text for a width, the value
// compared to find the best subject, and which direction is better.
type row struct {
	label  string
	better int // +1 higher is better, -1 lower is better, 0 not compared
	// syscallBased rows are not compared in proc mode: /proc counts only
	// the read/write family, so paths that use other calls would "win".
	syscallBased bool
	// sparkline rows are followed by each subject's throughput history.
	sparkline bool
	cell      func(c cell, w int) (text string, key float64, ok bool)
	style     func(c cell, st styles) (styled bool, s func(string) string)

	// onlyWhen rows show only while some subject has a value, and are not
	// listed as unmeasured otherwise (the filter view's rows).
	onlyWhen bool
}

const na = "n/a"

// rows is the table of the view's metric rows, top to bottom. It is long
// because it is a table: one entry per row, each a few lines.
func (m columnsModel) rows() []row {
	rs := []row{
		{label: "throughput", better: +1, cell: func(c cell, w int) (string, float64, bool) {
			if c.rec.DeliveredBytesPerS == nil {
				return na, 0, false
			}
			v := *c.rec.DeliveredBytesPerS
			return metrics.SIRate(v), v, true
		}},
		{label: "avg | max", sparkline: true, cell: func(c cell, w int) (string, float64, bool) {
			if c.rec.DeliveredBytesPerS == nil {
				return na, 0, false
			}
			avg, mx := c.st.hist.avgMax(w)
			return firstFit(w, metrics.SI(avg)+" | "+metrics.SI(mx), metrics.SI(avg)+"|"+metrics.SI(mx)), 0, false
		}},
		{label: "CPU %core", better: -1, cell: func(c cell, w int) (string, float64, bool) {
			v, ok := c.rec.CPUPercent()
			if !ok {
				return na, 0, false
			}
			return fmt.Sprintf("%.1f%%", v), v, true
		}},
		{label: "CPU s/GB", better: -1, cell: func(c cell, w int) (string, float64, bool) {
			v, ok := c.rec.CPUSecondsPerGB()
			if !ok {
				return na, 0, false
			}
			return fmt.Sprintf("%.3f s", v), v, true
		}},
		{label: "syscalls/MB", better: -1, syscallBased: true, cell: func(c cell, w int) (string, float64, bool) {
			v, ok := c.rec.SyscallsPerMB()
			if !ok {
				return na, 0, false
			}
			return metrics.SI(v), v, true
		}},
		{label: "mode sw/s", better: -1, syscallBased: true, cell: func(c cell, w int) (string, float64, bool) {
			v, ok := c.perS(c.rec.ModeSwitches)
			if !ok {
				return na, 0, false
			}
			return metrics.SI(v), v, true
		}},
		{label: "ctx vol/inv", better: -1, cell: func(c cell, w int) (string, float64, bool) {
			return ctxCell(c.rec)
		}},
	}
	rs = append(rs, m.filterRows()...) // filterrows.go
	if len(m.sample.Consumers) > 0 {
		rs = append(rs, row{label: "consumer cs", better: -1, cell: func(c cell, w int) (string, float64, bool) {
			if c.cons == nil {
				return na, 0, false
			}
			return ctxCell(*c.cons)
		}})
	}
	rs = append(rs,
		row{label: "copies/byte", better: -1, cell: func(c cell, w int) (string, float64, bool) {
			v, ok := c.rec.SentCopiesPerByte()
			if !ok {
				if c.rec.CopiedToUserBytes != nil && !c.active() {
					return "idle", 0, false
				}
				return na, 0, false
			}
			txt := fmt.Sprintf("%.2f", v)
			return txt + " " + bar(v, 2, w-len(txt)-2), math.Round(v*100) / 100, true
		}},
		row{label: "faults/s", better: -1, cell: func(c cell, w int) (string, float64, bool) {
			pf, ok := c.perS(c.rec.PageFaults)
			if !ok {
				return na, 0, false
			}
			if ff, ok := c.perS(c.rec.FileFaults); ok && w >= 14 {
				return metrics.SI(pf) + " (" + metrics.SI(ff) + " file)", pf, true
			}
			return metrics.SI(pf), pf, true
		}},
		row{label: "zerocopy", cell: func(c cell, w int) (string, float64, bool) {
			if c.rec.ZerocopyBytes == nil {
				return na, 0, false
			}
			p, ok := c.rec.ZerocopyCopiedPercent()
			if !ok {
				return "-", 0, false
			}
			if p == 0 {
				return "0% copied", 0, false
			}
			return firstFit(w, fmt.Sprintf("!! kernel copied %.0f%%", p), fmt.Sprintf("!! copied %.0f%%", p), fmt.Sprintf("COPIED %.0f%%", p)), 0, false
		}, style: func(c cell, st styles) (bool, func(string) string) {
			if val(c.rec.ZerocopyCopiedBytes) > 0 {
				return true, func(s string) string { return st.warn.Render(s) }
			}
			return false, nil
		}},
	)
	return rs
}

func ctxCell(r metrics.Record) (string, float64, bool) {
	v, i, ok := r.CtxPerSecond()
	if !ok {
		return na, 0, false
	}
	return metrics.SI(v) + "/" + metrics.SI(i), v + i, true
}

// firstFit returns the first text no wider than w, or the last one.
func firstFit(w int, texts ...string) string {
	for _, t := range texts {
		if len([]rune(t)) <= w {
			return t
		}
	}
	return texts[len(texts)-1]
}

// view renders the column table and, when height allows, the copy diagrams,
// in at most height lines of the terminal width.
func (m columnsModel) view(height int) string {
	names := m.visible()
	labelW, colW, fits := m.layout(len(names))
	if len(names) == 0 || m.samples == 0 {
		if m.samples == 0 {
			return m.c.st.dim.Render("waiting for the first sample…")
		}
		return m.c.st.dim.Render("no subject to show (press 1-9 to enable paths)")
	}
	off := min(max(0, m.offset), len(names)-fits)
	f := frame{labelW: labelW, colW: colW, w: colW - 1} // one blank between columns
	f.shown = names[off : off+fits]
	f.cells = m.cells(f.shown)

	lines := []string{m.headings(f, off, len(names))}
	rows, missing := m.measuredRows(f)
	diagH, noteH := 0, 0
	if f.haveCopies() {
		diagH = diagramLines
	}
	if len(missing) > 0 {
		noteH = 1
	}
	// Sparklines grow taller when the terminal has room for them.
	sparkH := min(4, max(1, height-(1+len(rows)+diagH+noteH)))
	for _, r := range rows {
		lines = append(lines, m.rowLine(r, f.cells, labelW, f.w))
		if r.sparkline {
			lines = append(lines, m.sparkLines(f, sparkH)...)
		}
	}
	// Copy diagrams, when copies are measured and all their lines fit.
	if diagH > 0 && len(lines)+diagH+noteH <= height {
		lines = append(lines, m.diagrams(f)...)
	}
	// With room to spare: the busiest syscalls per MB and the verdict.
	lines = append(lines, m.extraLines(f.cells, labelW, f.w, height-len(lines)-noteH)...)
	if noteH > 0 {
		lines = append(lines, m.missingNote(missing))
	}
	if len(lines) > height {
		lines = lines[:height]
	}
	return strings.Join(lines, "\n")
}

// frame is the geometry of one drawing of the columns view and the
// subjects it shows.
type frame struct {
	labelW, colW, w int // label column, subject column, and its text width
	shown           []string
	cells           []cell
}

func (f frame) haveCopies() bool {
	for _, c := range f.cells {
		if c.st.tot.haveCopies {
			return true
		}
	}
	return false
}

// cells is what each shown subject's column draws: its latest record, or
// in the demo's race mode, while it waits its turn, its peak interval.
func (m columnsModel) cells(shown []string) []cell {
	cells := make([]cell, len(shown))
	for i, n := range shown {
		s := m.subjects[n]
		if s == nil {
			s = &subject{hist: newRing(m.c.cfg.History)}
		}
		c := cell{rec: s.cur, cons: s.cons, st: s}
		if m.c.cfg.Demo && m.c.mode == ModeRace && !c.active() && s.held != nil {
			c = cell{rec: *s.held, cons: s.heldCons, held: true, st: s}
		}
		cells[i] = c
	}
	return cells
}

// headings is the line of column titles (the demo's numbered by their
// key), with the visible range when columns scroll.
func (m columnsModel) headings(f frame, off, total int) string {
	st := m.c.st
	var b strings.Builder
	more := ""
	if len(f.shown) < total {
		more = fmt.Sprintf("%d-%d/%d", off+1, off+len(f.shown), total)
	}
	b.WriteString(fit(st.dim.Render(more), f.labelW))
	for i, n := range f.shown {
		title := n
		if m.c.cfg.Demo {
			for k, s := range m.c.cfg.Subjects {
				if s == n && k < 6 {
					title = fmt.Sprintf("%d %s", k+1, n)
				}
			}
		}
		if f.cells[i].held {
			b.WriteString(fit(st.dim.Render(fit(title, f.w)), f.colW))
			continue
		}
		b.WriteString(fit(st.name.Render(fit(title, f.w)), f.colW))
	}
	return b.String()
}

// measuredRows are the rows some shown subject has a value for; the others
// (fields the probe mode cannot measure) are named once at the bottom.
func (m columnsModel) measuredRows(f frame) (rows []row, missing []string) {
	for _, r := range m.rows() {
		measured := false
		for _, c := range f.cells {
			if t, _, _ := r.cell(c, f.w); t != na {
				measured = true
				break
			}
		}
		if measured {
			rows = append(rows, r)
		} else if !r.onlyWhen {
			missing = append(missing, r.label)
		}
	}
	return rows, missing
}

// sparkLines draws each subject's throughput history, h lines tall.
func (m columnsModel) sparkLines(f frame, h int) []string {
	st := m.c.st
	spark := make([][]string, len(f.cells))
	for i, c := range f.cells {
		spark[i] = sparkRows(c.st.hist.last(f.w), f.w, h, 0)
	}
	lines := make([]string, 0, h)
	var b strings.Builder
	for l := 0; l < h; l++ {
		b.Reset()
		b.WriteString(strings.Repeat(" ", f.labelW))
		for i, c := range f.cells {
			t := st.good.Render(spark[i][l])
			if c.held || !c.active() {
				t = st.dim.Render(spark[i][l])
			}
			b.WriteString(t + " ")
		}
		lines = append(lines, fit(b.String(), m.c.width))
	}
	return lines
}

// diagrams draws each subject's copy diagram side by side.
func (m columnsModel) diagrams(f frame) []string {
	st := m.c.st
	diag := make([][]string, len(f.cells))
	for i, c := range f.cells {
		diag[i] = diagram(c.st.tot, f.w, st)
	}
	labels := []string{"copy path", "(bytes", "since", "reset)"}
	lines := make([]string, 0, diagramLines)
	var b strings.Builder
	for l := 0; l < diagramLines; l++ {
		b.Reset()
		lab := ""
		if l < len(labels) {
			lab = labels[l]
		}
		b.WriteString(fit(st.label.Render(lab), f.labelW))
		for i := range f.cells {
			b.WriteString(fit(diag[i][l], f.w) + " ")
		}
		lines = append(lines, fit(b.String(), m.c.width))
	}
	return lines
}

// missingNote names the rows left out because nothing measured them.
func (m columnsModel) missingNote(missing []string) string {
	mode := "this probe mode"
	if m.sample.Mode() == metrics.ModeProc {
		mode = "/proc mode (run as root for eBPF)"
	}
	return fit(m.c.st.dim.Render("not measured in "+mode+": "+strings.Join(missing, ", ")), m.c.width)
}

// topSyscalls is how many syscall names the wide view lists per subject.
const topSyscalls = 4

// extraLines draws, when room allows, each subject's busiest syscalls (per
// MB delivered, or per second when nothing was delivered) and its verdict.
func (m columnsModel) extraLines(cells []cell, labelW, w, room int) []string {
	st := m.c.st
	var lines []string
	var b strings.Builder
	hasNames := false
	for _, c := range cells {
		hasNames = hasNames || len(c.rec.SyscallsByName) > 0
	}
	if hasNames && room >= topSyscalls+1 {
		cols := make([][]string, len(cells))
		for i, c := range cells {
			cols[i] = syscallLines(c.rec, topSyscalls)
		}
		for l := 0; l < topSyscalls; l++ {
			b.Reset()
			lab := ""
			if l == 0 {
				lab = "syscalls/MB"
				if !m.anyActive(cells) {
					lab = "syscalls/s"
				}
			}
			b.WriteString(fit(st.label.Render(lab), labelW))
			for i := range cells {
				t := ""
				if l < len(cols[i]) {
					t = cols[i][l]
				}
				b.WriteString(fit(t, w) + " ")
			}
			lines = append(lines, fit(b.String(), m.c.width))
		}
		room -= topSyscalls
	}
	const verdictLines = 3
	if room >= verdictLines+1 && m.c.width >= 100 {
		cols := make([][]string, len(cells))
		any := false
		for i, c := range cells {
			if c.rec.CopiedToUserBytes != nil {
				cols[i] = wrap(metrics.Verdict(c.rec), w, verdictLines)
				any = true
			}
		}
		if any {
			for l := 0; l < verdictLines; l++ {
				b.Reset()
				lab := ""
				if l == 0 {
					lab = "verdict"
				}
				b.WriteString(fit(st.label.Render(lab), labelW))
				for i := range cells {
					t := ""
					if l < len(cols[i]) {
						t = cols[i][l]
					}
					b.WriteString(fit(st.header.Render(t), w) + " ")
				}
				lines = append(lines, fit(b.String(), m.c.width))
			}
		}
	}
	return lines
}

func (m columnsModel) anyActive(cells []cell) bool {
	for _, c := range cells {
		if c.active() {
			return true
		}
	}
	return false
}

// syscallLines lists a record's busiest syscalls, "name rate", per MB
// delivered when it delivered anything, else per second.
func syscallLines(r metrics.Record, n int) []string {
	type kv struct {
		name string
		v    uint64
	}
	var all []kv
	for k, v := range r.SyscallsByName {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].name < all[j].name
	})
	var out []string
	for i := 0; i < len(all) && i < n; i++ {
		per := float64(all[i].v)
		if d := val(r.DeliveredBytes); d > 0 {
			per /= float64(d) / 1e6
		} else if r.IntervalS > 0 {
			per /= r.IntervalS
		}
		out = append(out, all[i].name+" "+metrics.SI(per))
	}
	return out
}

// wrap breaks s into at most n lines of at most w cells, at spaces.
func wrap(s string, w, n int) []string {
	var out []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case len([]rune(line))+1+len([]rune(word)) <= w:
			line += " " + word
		default:
			out = append(out, line)
			line = word
		}
	}
	if line != "" {
		out = append(out, line)
	}
	if len(out) > n {
		out = out[:n]
		last := []rune(out[n-1])
		if len(last) >= w {
			last = last[:w-1]
		}
		out[n-1] = string(last) + "…"
	}
	return out
}

// rowLine draws one metric row across the shown subjects.
func (m columnsModel) rowLine(r row, cells []cell, labelW, w int) string {
	st := m.c.st
	texts := make([]string, len(cells))
	keys := make([]float64, len(cells))
	oks := make([]bool, len(cells))
	for i, c := range cells {
		texts[i], keys[i], oks[i] = r.cell(c, w)
	}
	better := r.better
	if m.sample.Mode() == metrics.ModeProc && r.syscallBased {
		better = 0
	}
	best := bestOf(better, keys, oks, cells)
	var b strings.Builder
	b.WriteString(fit(st.label.Render(fit(r.label, labelW-1)), labelW))
	for i, c := range cells {
		t := texts[i]
		if best[i] {
			t = st.best.Render(fit(t+"*", w))
		} else {
			t = fit(t, w)
			if r.style != nil {
				if ok, f := r.style(c, st); ok {
					t = f(t)
				}
			}
			if c.held || !c.active() {
				t = st.dim.Render(t)
			}
		}
		b.WriteString(t + " ")
	}
	return fit(b.String(), m.c.width)
}

// bestOf marks the subjects whose key is the best of the row among active
// subjects, when at least two compare and they are not all equal.
func bestOf(better int, keys []float64, oks []bool, cells []cell) []bool {
	marks := make([]bool, len(keys))
	if better == 0 {
		return marks
	}
	keys = append([]float64(nil), keys...)
	for i, k := range keys {
		keys[i] = round3(k)
	}
	bestV := math.Inf(-better)
	n := 0
	allEqual := true
	first := math.NaN()
	for i, k := range keys {
		if !oks[i] || !cells[i].active() {
			continue
		}
		n++
		if math.IsNaN(first) {
			first = k
		} else if k != first {
			allEqual = false
		}
		if (better > 0 && k > bestV) || (better < 0 && k < bestV) {
			bestV = k
		}
	}
	if n < 2 || allEqual {
		return marks
	}
	for i, k := range keys {
		if oks[i] && cells[i].active() && k == bestV {
			marks[i] = true
		}
	}
	return marks
}

// round3 rounds to 3 significant digits, the precision the cells show, so
// values that look equal rank equal.
func round3(v float64) float64 {
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	mag := math.Pow(10, 2-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*mag) / mag
}
