package tui

import (
	"math"
	"strings"
)

// ring keeps the last n values of one series.
type ring struct {
	vals []float64
	next int
	full bool
}

func newRing(n int) *ring { return &ring{vals: make([]float64, n)} }

func (r *ring) push(v float64) {
	r.vals[r.next] = v
	r.next++
	if r.next == len(r.vals) {
		r.next = 0
		r.full = true
	}
}

// last returns up to n most recent values, oldest first.
func (r *ring) last(n int) []float64 {
	size := r.next
	if r.full {
		size = len(r.vals)
	}
	if n > size {
		n = size
	}
	out := make([]float64, n)
	for i := 0; i < n; i++ {
		idx := (r.next - n + i + len(r.vals)) % len(r.vals)
		out[i] = r.vals[idx]
	}
	return out
}

// avgMax returns the mean and maximum of the most recent n values.
func (r *ring) avgMax(n int) (avg, max float64) {
	vs := r.last(n)
	if len(vs) == 0 {
		return 0, 0
	}
	for _, v := range vs {
		avg += v
		if v > max {
			max = v
		}
	}
	return avg / float64(len(vs)), max
}

// sparkLevel returns bar height i (0..7) of ▁▂▃▄▅▆▇█: the block elements
// U+2581..U+2588 are consecutive.
func sparkLevel(i int) rune { return '▁' + rune(i) }

// numSparkLevels is the number of bar heights.
const numSparkLevels = 8

// sparkline draws vals (oldest first) right-aligned in w cells, scaled to
// top (the largest value when top <= 0). Zero draws as a blank.
func sparkline(vals []float64, w int, top float64) string {
	if w <= 0 {
		return ""
	}
	if len(vals) > w {
		vals = vals[len(vals)-w:]
	}
	if top <= 0 {
		for _, v := range vals {
			top = math.Max(top, v)
		}
	}
	var b strings.Builder
	b.WriteString(strings.Repeat(" ", w-len(vals)))
	for _, v := range vals {
		if v <= 0 || top <= 0 {
			b.WriteRune(' ')
			continue
		}
		i := int(math.Round(v / top * float64(numSparkLevels-1)))
		if i >= numSparkLevels {
			i = numSparkLevels - 1
		}
		b.WriteRune(sparkLevel(i))
	}
	return b.String()
}

// sparkRows draws vals (oldest first) right-aligned in w cells and h rows,
// top row first, scaled to top (the largest value when top <= 0).
func sparkRows(vals []float64, w, h int, top float64) []string {
	if h <= 1 {
		return []string{sparkline(vals, w, top)}
	}
	if len(vals) > w {
		vals = vals[len(vals)-w:]
	}
	if top <= 0 {
		for _, v := range vals {
			top = math.Max(top, v)
		}
	}
	rows := make([]strings.Builder, h)
	pad := strings.Repeat(" ", max(0, w-len(vals)))
	for i := range rows {
		rows[i].WriteString(pad)
	}
	for _, v := range vals {
		eighths := 0
		if v > 0 && top > 0 {
			eighths = int(math.Round(v / top * float64(h*8)))
			eighths = max(eighths, 1)
		}
		for r := 0; r < h; r++ {
			level := min(8, max(0, eighths-(h-1-r)*8))
			if level == 0 {
				rows[r].WriteRune(' ')
			} else {
				rows[r].WriteRune(sparkLevel(level - 1))
			}
		}
	}
	out := make([]string, h)
	for i := range rows {
		out[i] = rows[i].String()
	}
	return out
}
