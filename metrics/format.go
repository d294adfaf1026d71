package metrics

import (
	"fmt"
	"math"
)

// siPrefixes are the prefixes SI uses, in steps of 1000.
var siPrefixes = [...]string{"", "k", "M", "G", "T", "P"}

// SIParts formats v with three significant digits and returns the number
// and its SI prefix ("", k, M, G, T, P): 1234 is ("1.23", "k"), 7 is
// ("7", ""). Whole numbers below 1000 print without decimals.
func SIParts(v float64) (num, prefix string) {
	neg := v < 0
	if neg {
		v = -v
	}
	i := 0
	for v >= 999.5 && i < len(siPrefixes)-1 {
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
	return num, siPrefixes[i]
}

// SI formats v with an SI prefix and three significant digits ("12.3k").
// It is the one number formatter every text output uses.
func SI(v float64) string {
	n, p := SIParts(v)
	return n + p
}

// SIBytes formats a byte count with an SI prefix ("12.3 kB"; GB = 1e9
// bytes, as everywhere in copyscope).
func SIBytes(v float64) string {
	n, p := SIParts(v)
	return n + " " + p + "B"
}

// SIRate formats bytes per second ("200 MB/s").
func SIRate(v float64) string { return SIBytes(v) + "/s" }
