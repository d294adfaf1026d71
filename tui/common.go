package tui

import (
	"github.com/charmbracelet/lipgloss"
)

// defaultChunks are the chunk sizes the c key cycles through.
func defaultChunks() []int { return []int{4 << 10, 64 << 10, 1 << 20} }

// filterShares are the shares of records the t key cycles the demo's
// tag filter through (1: off).
func filterShares() []float64 { return []float64{1, 0.5, 0.1, 0.01} }

// defaultFetches are the Fetch sizes the f key cycles through: 64M is
// bench's default, so demo and bench figures compare at the same size.
func defaultFetches() []int { return []int{256 << 10, 1 << 20, 64 << 20} }

// The demo's modes; the demo's own constants are these, so the keys the
// TUI sends and the modes the demo runs cannot drift apart.
const (
	// ModeFair paces every path to the same rate, so costs per GB compare.
	ModeFair = "fair"
	// ModeRace runs each path alone at full speed in turn.
	ModeRace = "race"
)

// Config says what the UI shows and whom it tells about key presses.
type Config struct {
	// Title names the command ("copyscope demo", "copyscope watch").
	Title string
	// Kernel is the running kernel's release, shown in the header.
	Kernel string
	// Demo enables the demo-only keys (mode, chunk, paths) and header.
	Demo bool
	// Subjects lists the demo's paths in key order (key 1 is the first).
	// Subjects seen in samples but not listed are shown after them.
	Subjects []string
	// Mode is the demo's initial mode (ModeFair or ModeRace).
	Mode string
	// Rate is the demo's fair-mode rate per path in bytes per second.
	Rate float64
	// Chunk is the demo's initial fetch chunk size in bytes.
	Chunk int
	// Chunks are the sizes the c key cycles through (default 4K, 64K, 1M).
	Chunks []int
	// Fetch is the demo's initial Fetch max_bytes (0: not shown).
	Fetch int
	// Filter is the demo's initial tag-filter share (0 or 1: none).
	Filter float64
	// Fetches are the sizes the f key cycles through (default 256K, 1M, 64M).
	Fetches []int
	// History is the number of samples kept per sparkline (default 120).
	History int
	// Renderer styles the output; nil means lipgloss's default renderer.
	Renderer *lipgloss.Renderer
	// Controller is told about mode, chunk, path, reset and pause keys; nil
	// means nobody listens.
	Controller Controller
}

// styles are the lipgloss styles of one renderer.
type styles struct {
	title, header, label, name, dim, best, warn, bad, good, paused lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	return styles{
		title:  r.NewStyle().Bold(true).Foreground(lipgloss.Color("12")),
		header: r.NewStyle().Foreground(lipgloss.Color("250")),
		label:  r.NewStyle().Foreground(lipgloss.Color("245")),
		name:   r.NewStyle().Bold(true).Foreground(lipgloss.Color("14")),
		dim:    r.NewStyle().Foreground(lipgloss.Color("240")),
		best:   r.NewStyle().Bold(true).Foreground(lipgloss.Color("10")),
		warn:   r.NewStyle().Bold(true).Foreground(lipgloss.Color("0")).Background(lipgloss.Color("11")),
		bad:    r.NewStyle().Foreground(lipgloss.Color("9")),
		good:   r.NewStyle().Foreground(lipgloss.Color("10")),
		paused: r.NewStyle().Bold(true).Reverse(true),
	}
}

// common is the state every view shares: terminal size, configuration and
// the demo settings the keys change.
type common struct {
	cfg     Config
	width   int
	height  int
	st      styles
	keys    keyMap
	mode    string
	chunk   int
	fetch   int
	filter  float64 // share of records filtered for; 0 or 1: none
	dlqOn   bool    // the demo sends dead letters
	enabled map[string]bool
	paused  bool
}

func newCommon(cfg Config) *common {
	if cfg.Renderer == nil {
		cfg.Renderer = lipgloss.DefaultRenderer()
	}
	if len(cfg.Chunks) == 0 {
		cfg.Chunks = defaultChunks()
	}
	if len(cfg.Fetches) == 0 {
		cfg.Fetches = defaultFetches()
	}
	if cfg.History <= 0 {
		cfg.History = 120
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeFair
	}
	c := &common{
		cfg:     cfg,
		width:   80,
		height:  24,
		st:      newStyles(cfg.Renderer),
		keys:    newKeyMap(cfg.Demo),
		mode:    cfg.Mode,
		chunk:   cfg.Chunk,
		fetch:   cfg.Fetch,
		filter:  cfg.Filter,
		enabled: map[string]bool{},
	}
	for _, s := range cfg.Subjects {
		c.enabled[s] = true
	}
	return c
}

// act tells the controller, if any.
func (c *common) act(a Action) {
	if c.cfg.Controller != nil {
		c.cfg.Controller.Act(a)
	}
}

// isEnabled reports whether subject s is shown (subjects not listed in
// Config.Subjects always are).
func (c *common) isEnabled(s string) bool {
	on, listed := c.enabled[s]
	return on || !listed
}
