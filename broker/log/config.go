package log

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// FsyncPolicy says when appended data is forced to disk.
type FsyncPolicy int

const (
	// FsyncInterval syncs every partition's active segment every
	// Config.FsyncInterval (the default).
	FsyncInterval FsyncPolicy = iota
	// FsyncAlways makes Append return only after its data is durable
	// (fdatasync, or msync for ProduceMmap).
	FsyncAlways
	// FsyncNever leaves write-back to the kernel; segments are still synced
	// when they roll and at Close.
	FsyncNever
)

// ParseFsync parses "always", "interval" or "never".
func ParseFsync(s string) (FsyncPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "always":
		return FsyncAlways, nil
	case "interval":
		return FsyncInterval, nil
	case "never":
		return FsyncNever, nil
	}
	return 0, fmt.Errorf("unknown fsync policy %q: use always, interval or never", s)
}

// String returns the policy's command-line name.
func (f FsyncPolicy) String() string {
	switch f {
	case FsyncAlways:
		return "always"
	case FsyncInterval:
		return "interval"
	case FsyncNever:
		return "never"
	}
	return fmt.Sprintf("FsyncPolicy(%d)", int(f))
}

// ProduceMode says how appended batches reach the segment file.
type ProduceMode int

const (
	// ProduceWrite writes batches with one pwrite per Append (the default).
	ProduceWrite ProduceMode = iota
	// ProduceMmap copies batches into a shared mapping of a preallocated
	// segment, as RocketMQ's CommitLog does.
	ProduceMmap
)

// ParseProduceMode parses "write" or "mmap".
func ParseProduceMode(s string) (ProduceMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "write":
		return ProduceWrite, nil
	case "mmap":
		return ProduceMmap, nil
	}
	return 0, fmt.Errorf("unknown produce mode %q: use write or mmap", s)
}

// String returns the mode's command-line name.
func (m ProduceMode) String() string {
	switch m {
	case ProduceWrite:
		return "write"
	case ProduceMmap:
		return "mmap"
	}
	return fmt.Sprintf("ProduceMode(%d)", int(m))
}

// Config tunes a Store. Start from DefaultConfig; zero SegmentBytes,
// IndexIntervalBytes, RetentionCheck, FsyncInterval and ProducerExpiration
// take their defaults.
type Config struct {
	SegmentBytes       int64         // roll size, default 1 GiB (Kafka); at most 2 GiB-1
	IndexIntervalBytes int64         // sparse index entry every N bytes, default 4096
	RetentionBytes     int64         // per partition; <0 unlimited (default)
	RetentionAge       time.Duration // 0 unlimited; default 168h (Kafka)
	RetentionCheck     time.Duration // how often retention runs, default 30s
	Fsync              FsyncPolicy   // default FsyncInterval
	FsyncInterval      time.Duration // default 1s
	Produce            ProduceMode   // default ProduceWrite
	LogAppendTime      bool          // stamp batches with broker time (Kafka message.timestamp.type=LogAppendTime)
	ProducerExpiration time.Duration // idempotent producers idle this long are forgotten; default 24h (Kafka producer.id.expiration.ms), <0 never
	// MaxPartitions caps the partitions of all topics together (0:
	// DefaultMaxPartitions, -1: no cap); a CreateTopic beyond it is
	// refused whole.
	MaxPartitions int
	// MaxOpenSegmentFiles caps the descriptors segments hold open, with
	// their mappings (0: DefaultMaxOpenSegmentFiles, -1: no cap); the
	// least recently used partitions release theirs and reopen them on
	// demand.
	MaxOpenSegmentFiles int
	// Logf, if set, receives one line per notable event: recovery
	// truncations, skipped partitions, the data directory lost.
	Logf func(format string, args ...any)
}

// DefaultConfig returns Kafka's defaults: 1 GiB segments, an index entry
// every 4 KiB, no size limit, 7 days of retention checked every 30 s, fsync
// every second, pwrite appends, producer (CreateTime) timestamps, idle
// producers forgotten after a day.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       1 << 30,
		IndexIntervalBytes: 4096,
		RetentionBytes:     -1,
		RetentionAge:       168 * time.Hour,
		RetentionCheck:     30 * time.Second,
		Fsync:              FsyncInterval,
		FsyncInterval:      time.Second,
		Produce:            ProduceWrite,
		ProducerExpiration: 24 * time.Hour,
	}
}

// DefaultMaxPartitions is the default cap on partitions over all topics:
// each costs a directory, open descriptors and mappings for its active
// segment, and a little memory.
const DefaultMaxPartitions = 4096

// minSegmentBytes keeps segments large enough to hold a batch header and an
// index page.
const minSegmentBytes = 1024

// maxIndexBytes caps an index file as Kafka's segment.index.bytes does; a
// segment whose index is full rolls.
const maxIndexBytes = 10 << 20

// normalize fills defaults and rejects values the log cannot honour.
func (c Config) normalize() (Config, error) {
	d := DefaultConfig()
	if c.SegmentBytes == 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	if c.IndexIntervalBytes == 0 {
		c.IndexIntervalBytes = d.IndexIntervalBytes
	}
	if c.RetentionCheck == 0 {
		c.RetentionCheck = d.RetentionCheck
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = d.FsyncInterval
	}
	if c.ProducerExpiration == 0 {
		c.ProducerExpiration = d.ProducerExpiration
	}
	if c.MaxPartitions == 0 {
		c.MaxPartitions = DefaultMaxPartitions
	}
	if c.MaxOpenSegmentFiles == 0 {
		c.MaxOpenSegmentFiles = DefaultMaxOpenSegmentFiles
	}
	switch {
	case c.SegmentBytes < minSegmentBytes || c.SegmentBytes > math.MaxInt32:
		return c, fmt.Errorf("segment size %d bytes is out of range: use %d..%d", c.SegmentBytes, minSegmentBytes, math.MaxInt32)
	case c.IndexIntervalBytes < 0:
		return c, fmt.Errorf("index interval %d bytes is negative: use a positive size such as 4096", c.IndexIntervalBytes)
	case c.RetentionAge < 0:
		return c, fmt.Errorf("retention age %v is negative: use 0 for unlimited", c.RetentionAge)
	case c.RetentionCheck < 0 || c.FsyncInterval < 0:
		return c, fmt.Errorf("retention check %v and fsync interval %v must be positive", c.RetentionCheck, c.FsyncInterval)
	case c.Fsync < FsyncInterval || c.Fsync > FsyncNever:
		return c, fmt.Errorf("unknown fsync policy %d: use FsyncAlways, FsyncInterval or FsyncNever", int(c.Fsync))
	case c.MaxPartitions < -1 || c.MaxOpenSegmentFiles < -1:
		return c, fmt.Errorf("max partitions %d and max open segment files %d: use a positive count, or -1 for no cap", c.MaxPartitions, c.MaxOpenSegmentFiles)
	case c.Produce < ProduceWrite || c.Produce > ProduceMmap:
		return c, fmt.Errorf("unknown produce mode %d: use ProduceWrite or ProduceMmap", int(c.Produce))
	}
	return c, nil
}

// indexCapacity is the byte size of a fresh index file for a segment that
// may grow to segBytes.
func (c Config) indexCapacity(segBytes int64) int64 {
	n := (segBytes/c.IndexIntervalBytes + 2) * indexEntrySize
	if n > maxIndexBytes && segBytes <= c.SegmentBytes {
		n = maxIndexBytes
	}
	return n
}
