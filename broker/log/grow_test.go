package log

import (
	"errors"
	"testing"
)

// TestAddPartitions grows a topic, writes to a new partition, reopens the
// store and checks the new partitions and their data are there; shrinking
// and unknown topics are refused.
func TestAddPartitions(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic("t", 2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		topic string
		count int32
		want  error
	}{
		{"t", 2, ErrInvalidPartitions},
		{"t", 1, ErrInvalidPartitions},
		{"t", maxPartitions + 1, ErrInvalidPartitions},
		{"nope", 3, ErrUnknownTopicOrPartition},
		{"t", 4, nil},
	} {
		if err := s.AddPartitions(c.topic, c.count); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("AddPartitions(%s, %d) = %v, want %v", c.topic, c.count, err, c.want)
		}
	}
	p, err := s.Partition("t", 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(makeBatch(batchSpec{n: 3, value: 10, pid: -1})); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := s.Topics()["t"]; n != 4 {
		t.Fatalf("after reopening, topic t has %d partitions, want 4", n)
	}
	p, _ = s.Partition("t", 3)
	if p.EndOffset() != 3 {
		t.Fatalf("new partition 3 ends at %d after reopening, want 3", p.EndOffset())
	}
}
