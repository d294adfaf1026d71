package tui

import (
	"strings"

	"github.com/charmbracelet/bubbles/help"
)

// helpModel is the ? view: the keys, and what every row means.
type helpModel struct {
	c *common
}

func newHelpModel(c *common) helpModel { return helpModel{c: c} }

// helpRows explains each row of the columns view.
func helpRows() [][2]string {
	return [][2]string{
		{"throughput", "bytes the subject put onto sockets per second; sparkline of the last samples"},
		{"CPU %core", "time on CPU per second of wall time (100% = one core)"},
		{"CPU s/GB", "CPU seconds spent per GB (1e9 bytes) delivered: the cost to compare"},
		{"syscalls/MB", "system calls entered per MB delivered"},
		{"mode sw/s", "user->kernel->user transitions per second (2 per syscall)"},
		{"ctx vol/inv", "context switches per second: sleeping (voluntary) / preempted"},
		{"consumer cs", "the same for the consumer threads receiving this path (their wake-ups)"},
		{"copies/byte", "bytes copied by the CPU (to + from user) per delivered byte; bar 0..2"},
		{"faults/s", "user page faults per second (file-mapping faults in parentheses)"},
		{"zerocopy", "MSG_ZEROCOPY sends; !! when the kernel copied them anyway (loopback)"},
		{"copy path", "disk -> page cache -> user buffer -> socket with bytes per arrow since reset"},
		{"*", "best subject for that row among the active ones"},
	}
}

func (h helpModel) view(height int) string {
	st := h.c.st
	hm := help.New()
	hm.Width = h.c.width
	var lines []string
	lines = append(lines, st.name.Render("keys"), hm.FullHelpView(h.c.keys.FullHelp()), "", st.name.Render("rows"))
	for _, r := range helpRows() {
		lines = append(lines, fit(st.label.Render(fit(r[0], 13))+r[1], h.c.width))
	}
	lines = append(lines, "", st.dim.Render("press ? or esc to go back"))
	out := strings.Split(strings.Join(lines, "\n"), "\n")
	if len(out) > height {
		out = out[:height]
	}
	return strings.Join(out, "\n")
}
