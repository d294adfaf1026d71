package promexport

import (
	"strings"
	"testing"
)

func TestListenAddr(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"9464", "127.0.0.1:9464", ""},
		{":9464", "127.0.0.1:9464", ""},
		{"127.0.0.1:0", "127.0.0.1:0", ""},
		{"0.0.0.0:9464", "0.0.0.0:9464", ""}, // told otherwise
		{"[::1]:9464", "[::1]:9464", ""},
		{"no-port", "", "HOST:PORT"},
	} {
		got, err := ListenAddr(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ListenAddr(%q) error %v, want one saying %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
