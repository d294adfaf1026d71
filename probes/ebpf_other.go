//go:build !(linux && amd64)

package probes

import (
	"fmt"
	"runtime"
)

// EBPFOptions configures OpenEBPF.
type EBPFOptions struct {
	// CountAtEntry counts syscalls as they are entered, not as they return.
	CountAtEntry bool
	// SkipOptional leaves out the optional programs.
	SkipOptional bool
	// MaxThreads is how many threads can be counted at once.
	MaxThreads int
	// NoFollowChildren leaves new child processes of watched processes
	// unwatched.
	NoFollowChildren bool
}

// OpenEBPF is only built for linux/amd64: the BPF programs use x86_64
// syscall numbers and registers.
func OpenEBPF(EBPFOptions) (Probe, error) {
	return nil, fmt.Errorf("eBPF probes are built for linux/amd64 only, not %s/%s: use the proc backend", runtime.GOOS, runtime.GOARCH)
}

// Floor is the empty sys_exit program (linux/amd64 only).
type Floor struct{}

// AttachFloor is only built for linux/amd64.
func AttachFloor() (*Floor, error) {
	return nil, fmt.Errorf("the empty sys_exit program is built for linux/amd64 only, not %s/%s", runtime.GOOS, runtime.GOARCH)
}

// AttachLowFloor is only built for linux/amd64.
func AttachLowFloor() (*Floor, error) {
	return nil, fmt.Errorf("the empty low-cost floor programs are built for linux/amd64 only, not %s/%s", runtime.GOOS, runtime.GOARCH)
}

// Close does nothing.
func (*Floor) Close() error { return nil }
