// Package tagmix is the tag workload bench and the demo share for
// broker-side filters: record n gets tag "pNN" with bucket NN = (n * 37)
// mod 100, a fixed permutation, so any 100 consecutive records hold every
// bucket once and every batch holds each selectivity's matches evenly.
// A selectivity s keeps the buckets below round(100 s).
package tagmix

import (
	"fmt"
	"math"
	"strings"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/internal/recordbatch"
)

// Buckets is the number of distinct tags.
const Buckets = 100

// Bucket is record n's tag bucket.
func Bucket(n uint64) int { return int(n * 37 % Buckets) }

// Tag names a bucket.
func Tag(bucket int) string { return fmt.Sprintf("p%02d", bucket) }

// Cut is the number of buckets selectivity s keeps.
func Cut(s float64) int { return int(math.Round(s * Buckets)) }

// Expr is the filter expression keeping selectivity s ("" for s >= 1:
// no filter).
func Expr(s float64) string {
	k := Cut(s)
	if k >= Buckets {
		return ""
	}
	terms := make([]string, k)
	for i := range terms {
		terms[i] = Tag(i)
	}
	return strings.Join(terms, "||")
}

// Useful is a consumer's own check of a received batch against f: the
// bytes of its matching records plus its header when any matched (all of
// it when f is nil: no filter, everything is wanted).
func Useful(f *log.Filter, batch []byte) (int64, error) {
	if f == nil {
		return int64(len(batch)), nil
	}
	var useful int64
	err := log.Records(batch, func(r log.Record) {
		if f.Match(r.Key, r.Tag, r.HasTag) {
			useful += int64(len(r.Raw))
		}
	})
	if useful > 0 {
		useful += recordbatch.HeaderSize
	}
	return useful, err
}
