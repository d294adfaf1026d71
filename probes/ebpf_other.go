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
}

// OpenEBPF is only built for linux/amd64: the BPF programs use x86_64
// syscall numbers and registers.
func OpenEBPF(EBPFOptions) (Probe, error) {
	return nil, fmt.Errorf("eBPF probes are built for linux/amd64 only, not %s/%s: use the proc backend", runtime.GOOS, runtime.GOARCH)
}
