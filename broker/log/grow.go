package log

import (
	"fmt"
	"os"
)

// Config returns the store's configuration with defaults filled in, the
// values its partitions apply (DescribeConfigs reports them).
func (s *Store) Config() Config { return s.cfg }

// AddPartitions grows topic to count partitions, as Kafka's
// CreatePartitions does; existing partitions are untouched. A crash
// midway leaves the topic with the partitions created so far.
func (s *Store) AddPartitions(topic string, count int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("add partitions to %s: the store is closed", topic)
	}
	ps, ok := s.topics[topic]
	switch {
	case !ok:
		return fmt.Errorf("%w: topic %s", ErrUnknownTopicOrPartition, topic)
	case count <= int32(len(ps)):
		return fmt.Errorf("%w: topic %s has %d partitions; ask for more than that (partitions are never removed)", ErrInvalidPartitions, topic, len(ps))
	case count > maxPartitions:
		return fmt.Errorf("%w: topic %s can have at most %d partitions, asked for %d", ErrInvalidPartitions, topic, maxPartitions, count)
	}
	added := make([]*Partition, 0, int(count)-len(ps))
	for id := int32(len(ps)); id < count; id++ {
		p, err := openPartition(partitionDir(s.dir, topic, id), topic, id, &s.cfg, false)
		if err != nil {
			for _, q := range added {
				_ = q.shutdown(false)
				_ = os.RemoveAll(q.dir)
			}
			return fmt.Errorf("add partition %d to %s: %w", id, topic, err)
		}
		added = append(added, p)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("add partitions to %s: sync data directory: %w", topic, err)
	}
	s.topics[topic] = append(ps, added...)
	return nil
}
