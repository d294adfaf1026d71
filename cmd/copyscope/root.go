package main

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=..."; it is
// read-only at run time.
var version = "dev"

// exitError carries a process exit status through cobra without printing
// usage a second time.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "copyscope",
		Short: "Make the cost of moving data visible",
		Long: `copyscope shows, live, what each way of moving log data from disk to a
socket costs the machine: syscalls, user/kernel transitions, context
switches, bytes copied by the CPU, page faults and CPU time.

An embedded Kafka-compatible broker serves the same log over every transfer
path (read+write, mmap, sendfile, splice, MSG_ZEROCOPY); eBPF tracepoint
probes count what the kernel does for each; a terminal UI puts them side by
side. The same probes attach to any running process (watch).

Most commands need root (CAP_BPF + CAP_PERFMON) for exact eBPF counts; without
them copyscope falls back to /proc estimates and says so.
Run 'copyscope doctor' to see what this machine allows.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.AddCommand(newVersionCmd())
	root.AddCommand(newBenchCmd())
	root.AddCommand(newBrokerCmd())
	root.AddCommand(newDemoCmd())
	root.AddCommand(newWatchCmd())
	root.AddCommand(newDoctorCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the copyscope version and build information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copyscope %s (%s, %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
