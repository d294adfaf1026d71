package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseBytes parses a byte size such as 4096, 64KiB, 1.5GiB, 1MB or 64K.
// Suffixes are case-insensitive: KiB, MiB, GiB, TiB are powers of 1024;
// KB, MB, GB, TB powers of 1000; a bare K, M, G, T is binary (as dd's);
// B or no suffix means bytes. The result must be a whole, non-negative
// number of bytes that fits in an int64.
func parseBytes(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("size %q is empty: give a number of bytes such as 65536 or 64KiB", s)
	}
	i := len(in)
	for i > 0 && (in[i-1] < '0' || in[i-1] > '9') && in[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(in[:i]), strings.ToLower(strings.TrimSpace(in[i:]))
	var mult float64
	switch unit {
	case "", "b":
		mult = 1
	case "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "t", "tib":
		mult = 1 << 40
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)", s, in[i:])
	}
	if num == "" {
		return 0, fmt.Errorf("size %q has no number: write e.g. 64KiB", s)
	}
	if strings.Trim(num, "0123456789.") != "" {
		return 0, fmt.Errorf("size %q: %q is not a plain decimal number", s, num)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q: %q is not a non-negative number", s, num)
	}
	b := v * mult
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	if b != math.Trunc(b) {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	return int64(b), nil
}
