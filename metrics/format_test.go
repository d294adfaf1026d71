package metrics

import "testing"

func TestSI(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{SI(0), "0"}, {SI(7), "7"}, {SI(1234), "1.23k"}, {SI(99999), "100k"}, {SI(2.5e9), "2.50G"},
		{SI(-1234), "-1.23k"}, {SI(0.5), "0.50"},
		// Three significant digits at every boundary (watch's own
		// formatter printed "1000" and "10.00" here).
		{SI(999.6), "1.00k"}, {SI(9.999), "10.0"}, {SI(99.96), "100"}, {SI(999), "999"},
		{SIBytes(0), "0 B"}, {SIBytes(2e9), "2.00 GB"}, {SIBytes(12345), "12.3 kB"},
		{SIRate(200e6), "200 MB/s"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
