// Package crashtest holds the broker's crash test (test files only): it
// kills `copyscope broker --fsync always` with SIGKILL at random moments
// while an idempotent acks=-1 producer runs, restarts it, and checks that
// every acknowledged record survived, that served batches pass their
// CRC-32C with contiguous offsets, and how long the broker takes to serve
// again, also for a 1 GiB log. A second test kills it while offset commits
// stream in and checks every acknowledged commit survives. Run it with `go test ./broker/crashtest/`
// (it is skipped under -short).
package crashtest
