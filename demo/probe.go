package demo

import (
	"fmt"

	"github.com/copyscope/copyscope/probes"
)

// procDelivered says where delivered bytes come from in proc mode.
const procDelivered = "proc mode: a path's delivered bytes are what its demo consumer read off the socket (the /proc sampler cannot count socket bytes)"

// openProbe opens the requested probe backend. auto tries eBPF and falls
// back to the /proc sampler, saying why in the notes.
func openProbe(mode string) (probes.Probe, []string, error) {
	switch mode {
	case "ebpf":
		p, err := probes.OpenEBPF(probes.EBPFOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("demo: eBPF probes: %w (run as root, or use --probe proc for estimates)", err)
		}
		return p, p.Notes(), nil
	case "proc":
		p, err := probes.OpenProc()
		if err != nil {
			return nil, nil, fmt.Errorf("demo: /proc sampler: %w", err)
		}
		return p, append(p.Notes(), procDelivered), nil
	case "auto", "":
		p, err := probes.OpenEBPF(probes.EBPFOptions{})
		if err == nil {
			return p, p.Notes(), nil
		}
		pp, perr := probes.OpenProc()
		if perr != nil {
			return nil, nil, fmt.Errorf("demo: no probe works: eBPF: %v; /proc: %w", err, perr)
		}
		notes := append([]string{"eBPF unavailable, /proc estimates instead: " + err.Error()}, pp.Notes()...)
		return pp, append(notes, procDelivered), nil
	}
	return nil, nil, fmt.Errorf("demo: unknown probe mode %q (use auto, ebpf or proc)", mode)
}
