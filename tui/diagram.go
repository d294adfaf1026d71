package tui

import "github.com/copyscope/copyscope/metrics"

// diagramLines is the height of a copy diagram.
const diagramLines = 7

// diagram draws where a subject's bytes went since the last reset, top to
// bottom: disk -> page cache -> user buffer -> socket. CPU copies are
// drawn as solid arrows with their byte counts; bytes moved by reference
// (sendfile, splice) bypass the user buffer; a mapped page cache (mmap,
// MSG_ZEROCOPY: file faults, no copy out of the page cache) is drawn as a
// dashed arrow with its file faults.
func diagram(t totals, w int, st styles) []string {
	out := make([]string, 0, diagramLines)
	out = append(out, "disk")
	if t.haveDisk {
		out = append(out, firstFit(w, "↓ "+metrics.SIBytes(float64(t.diskRead))+" read", "↓ "+metrics.SIBytes(float64(t.diskRead))))
	} else {
		out = append(out, st.dim.Render("↓ n/a"))
	}
	out = append(out, "page cache")
	if !t.haveCopies {
		out = append(out, st.dim.Render("↓ n/a"), "user buffer", st.dim.Render("↓ n/a"), "socket")
		return out
	}
	sent := t.fromUser + t.zc
	byRef := t.moved > 0 && t.moved >= sent
	copyArrow := func(n uint64, word string) string {
		s := firstFit(w, "↓ "+metrics.SIBytes(float64(n))+" "+word, "↓ "+metrics.SIBytes(float64(n)))
		if n > 0 {
			return st.bad.Render(s)
		}
		return s
	}
	switch {
	case byRef:
		out = append(out,
			st.good.Render("╎ bypassed"),
			st.dim.Render(firstFit(w, "(user buffer skipped)", "(skipped)")),
			st.good.Render(firstFit(w, "╎ "+metrics.SIBytes(float64(t.moved))+" by ref", "╎ "+metrics.SIBytes(float64(t.moved)))))
	default:
		if t.fileFaults == 0 || t.toUser > 0 && t.toUser*2 >= sent {
			out = append(out, copyArrow(t.toUser, "copy"), "user buffer")
		} else {
			out = append(out,
				st.good.Render(firstFit(w, "⇣ mapped "+metrics.SI(float64(t.fileFaults))+" flt", "⇣ mapped")),
				firstFit(w, "user buffer = mapping", "mapped buf"))
		}
		if t.zc > 0 {
			s := firstFit(w, "↓ "+metrics.SIBytes(float64(t.zc))+" zc", "↓ "+metrics.SIBytes(float64(t.zc)))
			if t.zcCopied > 0 {
				s = st.warn.Render(firstFit(w, "↓ "+metrics.SIBytes(float64(t.zcCopied))+" copied!", "↓ copied!"))
			}
			out = append(out, s)
		} else {
			out = append(out, copyArrow(t.fromUser, "copy"))
		}
	}
	out = append(out, "socket")
	return out
}
