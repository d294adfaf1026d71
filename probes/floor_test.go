//go:build linux && amd64

package probes

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// attachedFloorPrograms counts loaded programs named floor_sys_exit.
func attachedFloorPrograms(t *testing.T) int {
	t.Helper()
	n := 0
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return n
		}
		if err != nil {
			t.Fatalf("list programs: %v", err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		if info, err := p.Info(); err == nil && info.Name == "floor_sys_exit" {
			n++
		}
		p.Close()
	}
}

// TestFloorAttachesAndDetaches loads the empty sys_exit program, finds it
// loaded, and finds it gone after Close.
func TestFloorAttachesAndDetaches(t *testing.T) {
	openEBPFOrSkip(t).Close() // skips without privileges
	before := attachedFloorPrograms(t)
	f, err := AttachFloor()
	if err != nil {
		t.Fatal(err)
	}
	if got := attachedFloorPrograms(t); got != before+1 {
		t.Errorf("%d floor programs loaded while attached, want %d", got, before+1)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The kernel frees a detached program after an RCU grace period.
	deadline := time.Now().Add(5 * time.Second)
	for attachedFloorPrograms(t) != before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := attachedFloorPrograms(t); got != before {
		t.Errorf("%d floor programs loaded 5 s after Close, want %d", got, before)
	}
}
