//go:build linux && amd64

package probes

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Floor is a set of attached empty programs (bpf/floor.bpf.c): what a
// tool that attaches to the same tracepoints costs on this kernel, before
// it counts anything. Close detaches them.
type Floor struct {
	objs  floorObjects
	links []link.Link
}

// AttachFloor attaches the exact mode's floor: an empty sys_exit program,
// the price any tool that counts syscalls with tracepoints pays. Like the
// probes it needs root (CAP_BPF and CAP_PERFMON) and kernel BTF.
func AttachFloor() (*Floor, error) {
	return attachFloor(func(o *floorObjects) []*ebpf.Program { return []*ebpf.Program{o.FloorSysExit} })
}

// AttachLowFloor attaches the low-cost mode's floor: empty programs on
// the tracepoints that mode uses (socket send and receive, TCP receive
// space, page-cache reads, context switches).
func AttachLowFloor() (*Floor, error) {
	return attachFloor(func(o *floorObjects) []*ebpf.Program {
		return []*ebpf.Program{o.FloorSend, o.FloorRecv, o.FloorRcvSpace, o.FloorFileRead, o.FloorSchedSwitch}
	})
}

func attachFloor(progs func(*floorObjects) []*ebpf.Program) (*Floor, error) {
	f := &Floor{}
	if err := loadFloorObjects(&f.objs, nil); err != nil {
		return nil, fmt.Errorf("load the empty floor programs: %w (needs root with CAP_BPF and CAP_PERFMON and kernel BTF; run copyscope doctor)", err)
	}
	for _, p := range progs(&f.objs) {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("attach the empty program %s: %w", p, err)
		}
		f.links = append(f.links, l)
	}
	return f, nil
}

// Close detaches and unloads the programs.
func (f *Floor) Close() error {
	var errs []error
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(append(errs, f.objs.Close())...)
}
