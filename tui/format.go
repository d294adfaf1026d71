package tui

import (
	"math"
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// fit pads or truncates s (which may hold ANSI styles) to exactly w cells.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	sw := ansi.StringWidth(s)
	if sw > w {
		return ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-sw)
}

// bar draws a horizontal bar of v/max in w cells with eighth-cell precision.
func bar(v, max float64, w int) string {
	if w <= 0 || max <= 0 {
		return ""
	}
	if v < 0 {
		v = 0
	}
	if v > max {
		v = max
	}
	eighths := int(math.Round(v / max * float64(w*8)))
	full := eighths / 8
	var b strings.Builder
	b.WriteString(strings.Repeat("█", full))
	if rem := eighths % 8; rem > 0 {
		b.WriteRune([]rune("▏▎▍▌▋▊▉")[rem-1])
		full++
	}
	b.WriteString(strings.Repeat("·", w-full))
	return b.String()
}
