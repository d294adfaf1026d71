package procfs

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to every parser: none may panic, and a
// stat that parses keeps its comm between the first '(' and the last ')'.
func FuzzParse(f *testing.F) {
	f.Add([]byte("42 (a) b) R 1 42 42 0 -1 4194304 120 0 3 0 7 9 0 0 20 0 1 0 100 1000 10\n"))
	f.Add([]byte("Name:\tx\nState:\tR (running)\nTgid:\t1\nCapEff:\tff\n"))
	f.Add([]byte("rchar: 1\nsyscr: 2\n"))
	f.Add([]byte("31 22 0:27 / /mnt/a\\040b rw - tmpfs tmpfs rw\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, err := ParseStat(b); err == nil {
			s := string(b)
			if want := s[strings.IndexByte(s, '(')+1 : strings.LastIndexByte(s, ')')]; st.Comm != want {
				t.Errorf("comm %q, want %q", st.Comm, want)
			}
		}
		_, _ = ParseStatus(b)
		_, _ = ParseIO(b)
		if ms, err := ParseMountinfo(b); err == nil {
			for _, m := range ms {
				if m.FSType == "" {
					t.Errorf("mount %+v without a type", m)
				}
			}
		}
	})
}
