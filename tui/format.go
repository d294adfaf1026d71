package tui

import (
	"fmt"
	"math"
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// siParts formats v with 3 significant digits and returns the number and
// its SI prefix ("", k, M, G, T, P).
func siParts(v float64) (num, prefix string) {
	neg := v < 0
	if neg {
		v = -v
	}
	prefixes := []string{"", "k", "M", "G", "T", "P"}
	i := 0
	for v >= 999.5 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	switch {
	case v == 0:
		num = "0"
	case i == 0 && v == math.Trunc(v):
		num = fmt.Sprintf("%.0f", v)
	case v < 9.995:
		num = fmt.Sprintf("%.2f", v)
	case v < 99.95:
		num = fmt.Sprintf("%.1f", v)
	default:
		num = fmt.Sprintf("%.0f", v)
	}
	if neg {
		num = "-" + num
	}
	return num, prefixes[i]
}

// si formats v with an SI prefix and 3 significant digits ("12.3k").
func si(v float64) string {
	n, p := siParts(v)
	return n + p
}

// bytesStr formats a byte count (GB = 1e9 bytes, as in the design).
func bytesStr(v float64) string {
	n, p := siParts(v)
	return n + " " + p + "B"
}

// rateStr formats bytes per second.
func rateStr(v float64) string { return bytesStr(v) + "/s" }

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
