package itest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestKafkaJSConsumerGroup runs kafkajs/group.test.js (KafkaJS, whose
// only consumer is a group consumer) against the broker twice: all of a
// 4-partition topic once and in order, then, after a broker restart, only
// what was produced after the group's committed offsets.
func TestKafkaJSConsumerGroup(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (apt-get install nodejs npm); skipping the KafkaJS test")
	}
	if _, err := os.Stat(filepath.Join("kafkajs", "node_modules", "kafkajs")); err != nil {
		t.Skip("KafkaJS is not installed: run `npm ci` in itest/kafkajs (.ci/run does); skipping the KafkaJS test")
	}
	dir := t.TempDir()
	b := startBroker(t, dir)
	const topic, group, partitions, n = "kjs", "kjsg", 4, 500
	run := func(first int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "--test", "group.test.js")
		cmd.Dir = "kafkajs"
		cmd.Env = append(os.Environ(), "BROKER="+b.addr, "TOPIC="+topic, "GROUP="+group,
			"RECORDS="+strconv.Itoa(n), "FIRST="+strconv.Itoa(first))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("node --test group.test.js (resume at %d): %v\n%s", first, err, out)
		}
		t.Logf("KafkaJS group read %d records from offset %d: %s", partitions*n, first, lastLines(out, 9))
	}
	produceSeq(t, b.addr, topic, partitions, n, 20)
	run(0)
	b.stop()
	b = startBroker(t, dir)
	produceSeq(t, b.addr, topic, partitions, n, 20)
	run(n)
}

// lastLines is the tail of a command's output, for logs.
func lastLines(out []byte, n int) string {
	lines := 0
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] == '\n' {
			if lines++; lines > n {
				return string(out[i+1:])
			}
		}
	}
	return fmt.Sprint(string(out))
}
