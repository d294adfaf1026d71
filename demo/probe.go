package demo

import (
	"fmt"

	"github.com/copyscope/copyscope/probes"
)

// openProbe opens the requested probe backend. auto tries eBPF and falls
// back to the /proc sampler, saying why in the notes.
func openProbe(mode string) (probes.Probe, []string, error) {
	switch mode {
	case "ebpf", "auto", "":
		p, err := probes.OpenEBPF(probes.EBPFOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("demo: eBPF probes: %w (run as root)", err)
		}
		return p, p.Notes(), nil
	}
	return nil, nil, fmt.Errorf("demo: unknown probe mode %q (use auto or ebpf)", mode)
}
