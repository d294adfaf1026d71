package main

import "testing"

func TestParseBytes(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"4096", 4096}, {"64KiB", 64 << 10}, {"64kib", 64 << 10}, {"64K", 64 << 10},
		{"1MB", 1e6}, {"1MiB", 1 << 20}, {"1GiB", 1 << 30}, {"1.5GiB", 3 << 29}, {"2GB", 2e9},
		{" 100 B ", 100}, {"1TiB", 1 << 40}, {"10kb", 10000},
	}
	for _, c := range good {
		got, err := parseBytes(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "KiB", "-1", "1.5", "12XB", "1e3", "abc", "99999999999TiB", "1..2K"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}
