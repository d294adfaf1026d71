// Package log is copyscope's durable, Kafka-layout partition log: one
// directory per topic-partition, append-only segment files of Kafka v2
// record batches stored exactly as produced (only the broker-owned fields
// are rewritten), a sparse offset index, roll by size, retention by bytes
// and age, idempotent-producer sequence checks, and crash recovery. Reads
// return file slices aligned to whole batches, so a transfer path can move
// record bytes to a socket without the broker ever touching them.
//
// On disk, DIR/<topic>-<partition>/ holds:
//
//	00000000000000001234.log      batches from offset 1234, as produced
//	00000000000000001234.index    8-byte entries (offset-1234, position), one per IndexIntervalBytes
//	00000000000000005678.snapshot producer state as of offset 5678
//
// and DIR/.lock (flock, owner pid) and DIR/.clean-shutdown (Close's marker).
// A partition recovery could not open is moved to DIR/<topic>-<n>.quarantined.
// An abstract unix socket named after DIR's canonical path locks the path
// itself, and a watcher refuses appends (ErrStorage) once DIR is removed or
// replaced (dirwatch.go).
//
// Recovery. After a clean Close nothing is scanned: the marker says every
// segment was synced and trimmed. Otherwise the active segment is scanned
// batch by batch (length, magic, contiguous offsets, CRC-32C through a
// read-only mapping: about 0.12 s per GiB here), a torn or corrupt tail is
// truncated and its index rebuilt. A sealed segment is trusted when it lies
// below the newest producer snapshot (written only after the segments below
// it were synced, like Kafka's recovery point) and its index passes cheap
// checks (increasing entries, sampled entries on batch headers, the headers
// after the last entry chaining exactly to the end of the file); any other
// is scanned and re-indexed. Segments that no longer follow on from a
// truncated one are removed, as Kafka does. Every cut is reported
// (Store.Recovery, Config.Logf).
//
// Producer state is snapshotted rather than rebuilt by scanning the whole
// log: a snapshot is a few dozen bytes per producer, written off the append
// path when a segment rolls and at Close, and recovery replays only the
// batch headers after the newest one.
package log
