package tagmix

import (
	"strings"
	"testing"

	"github.com/copyscope/copyscope/broker/log"
)

func TestBucketsArePermutation(t *testing.T) {
	for start := uint64(0); start < 500; start += 37 {
		seen := map[int]bool{}
		for n := start; n < start+Buckets; n++ {
			seen[Bucket(n)] = true
		}
		if len(seen) != Buckets {
			t.Fatalf("records %d..%d hold %d distinct buckets, want %d", start, start+Buckets-1, len(seen), Buckets)
		}
	}
}

func TestExpr(t *testing.T) {
	cases := []struct {
		s     float64
		terms int
	}{{1, 0}, {0.5, 50}, {0.1, 10}, {0.01, 1}, {0, 0}}
	for _, c := range cases {
		e := Expr(c.s)
		got := 0
		if e != "" {
			got = len(strings.Split(e, "||"))
			if _, err := log.ParseFilter(e); err != nil {
				t.Errorf("Expr(%g) does not parse: %v", c.s, err)
			}
		}
		if got != c.terms {
			t.Errorf("Expr(%g) has %d terms, want %d", c.s, got, c.terms)
		}
	}
}
