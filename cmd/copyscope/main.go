// Command copyscope makes the cost of moving data visible: a Kafka-compatible
// log broker serves the same log over every transfer path while eBPF probes
// count what the kernel does for each.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "copyscope:", err)
		os.Exit(exitCode(err))
	}
}
