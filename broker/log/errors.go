package log

import (
	"errors"
	"fmt"
)

// Sentinel errors; the errors Store and Partition return wrap one of these
// with the details (test with errors.Is).
var (
	// ErrLocked: another running broker holds the data directory.
	ErrLocked = errors.New("data directory locked")
	// ErrTopicExists: CreateTopic of a name already present.
	ErrTopicExists = errors.New("topic already exists")
	// ErrInvalidTopic: a topic name breaking Kafka's rules.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrInvalidPartitions: a partition count out of range.
	ErrInvalidPartitions = errors.New("invalid partition count")
	// ErrUnknownTopicOrPartition: no such topic or partition (or it was deleted).
	ErrUnknownTopicOrPartition = errors.New("unknown topic or partition")
	// ErrCorruptMessage: a record batch failed validation; nothing was written.
	ErrCorruptMessage = errors.New("corrupt message")
	// ErrOffsetOutOfRange: a read below the log start or beyond its end.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrOutOfOrderSequence: an idempotent producer skipped sequence numbers.
	ErrOutOfOrderSequence = errors.New("out of order sequence number")
	// ErrInvalidProducerEpoch: a batch from a fenced (older) producer epoch.
	ErrInvalidProducerEpoch = errors.New("invalid producer epoch")
	// ErrRecordTooLarge: a batch larger than a segment.
	ErrRecordTooLarge = errors.New("record batch too large")
	// ErrStorage: the log cannot make appends durable (a sync failed, or
	// the data directory was removed or replaced while running).
	ErrStorage = errors.New("storage error")
)

// lockedError is the message a second broker on the same directory gets.
type lockedError struct {
	dir string
	pid string
}

func (e *lockedError) Error() string {
	return fmt.Sprintf("data directory %s is locked by another running broker (pid %s); stop it or use --data to another directory", e.dir, e.pid)
}

func (e *lockedError) Unwrap() error { return ErrLocked }
