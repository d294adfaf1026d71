//go:build linux

package probes

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/copyscope/copyscope/internal/uring"
	"github.com/copyscope/copyscope/metrics"
)

// readUringOps adds each thread's io_uring operations by opcode
// (bpf/iouring.bpf.c's uring_ops, summed over CPUs).
func (p *ebpfProbe) readUringOps(update func(tid uint32, f func(c *metrics.Counters))) error {
	if p.uringOps == nil {
		return nil
	}
	var released []iouringUringOpKey
	err := eachPerCPU(p.uringOps, func(k iouringUringOpKey, v []iouringUringOpCounts) {
		var o metrics.UringOp
		for _, x := range v {
			o.Submitted += x.Submitted
			o.Completed += x.Completed
			o.Failed += x.Failed
			o.Bytes += x.Bytes
		}
		if o == (metrics.UringOp{}) {
			return
		}
		add := func(c *metrics.Counters) {
			if c.UringOps == nil {
				c.UringOps = metrics.UringOps{}
			}
			name := uring.Op(k.Op).String()
			x := c.UringOps[name]
			c.UringOps[name] = metrics.UringOp{Submitted: x.Submitted + o.Submitted, Completed: x.Completed + o.Completed,
				Failed: x.Failed + o.Failed, Bytes: x.Bytes + o.Bytes}
		}
		// An exited thread's entries are folded into its totals and
		// deleted (ebpf_release.go).
		if p.gone(k.Tid) {
			p.foldExited(k.Tid, add)
			released = append(released, k)
			return
		}
		update(k.Tid, add)
	})
	if err != nil {
		return fmt.Errorf("read uring_ops: %w", err)
	}
	for _, k := range released {
		if err := p.uringOps.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("release exited thread %d from uring_ops: %w", k.Tid, err)
		}
	}
	return nil
}

// forgetUringOps deletes the io_uring op counters of the given threads
// (keyed by thread and opcode, so found by walking the map).
func (p *ebpfProbe) forgetUringOps(tids map[uint32]bool) error {
	if p.uringOps == nil {
		return nil
	}
	var gone []iouringUringOpKey
	var k iouringUringOpKey
	var v []iouringUringOpCounts
	it := p.uringOps.Iterate()
	for it.Next(&k, &v) {
		if tids[k.Tid] {
			gone = append(gone, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("walk uring_ops: %w", err)
	}
	for _, k := range gone {
		if err := p.uringOps.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget thread %d in uring_ops: %w", k.Tid, err)
		}
	}
	return nil
}
