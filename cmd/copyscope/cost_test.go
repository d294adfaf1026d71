package main

import (
	"strings"
	"testing"
	"time"
)

// TestCostOptions: --cost and its sampling flags are validated before any
// probe is opened, each error naming the flag and the fix.
func TestCostOptions(t *testing.T) {
	for _, c := range []struct {
		cost, mode string
		duty       int
		period     time.Duration
		want       string // error substring, "" for none
	}{
		{"exact", "auto", 1, time.Second, ""},
		{"low", "auto", 1, time.Second, ""},
		{"low", "ebpf", 10, time.Second, ""},
		{"low", "auto", 100, time.Second, ""},
		{"exact", "auto", 10, time.Second, "add --cost low"},
		{"low", "auto", 0, time.Second, "--duty 0: use 1"},
		{"low", "auto", 101, time.Second, "--duty 101: use 1"},
		{"low", "auto", 10, 50 * time.Millisecond, "at least 100ms"},
		{"low", "proc", 1, time.Second, "drop --mode proc"},
		{"cheap", "auto", 1, time.Second, `unknown --cost "cheap"`},
	} {
		opts, err := costOptions(c.cost, c.mode, c.duty, c.period)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want one saying %q", c, err, c.want)
		case c.want == "" && c.cost == "low" && (!opts.LowCost || opts.Duty != c.duty || opts.DutyPeriod != c.period):
			t.Errorf("%+v: options %+v", c, opts)
		}
	}
}
