// Package tui is copyscope's terminal UI: samples of per-subject metrics
// records in, a side-by-side column per transfer path (demo) or per
// thread, process or command (watch) out, with sparklines, costs per GB,
// copy diagrams and the best subject per metric highlighted.
package tui

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/copyscope/copyscope/metrics"
)

// state is the active view.
type state int

const (
	stateColumns state = iota
	stateHelp
)

// SampleMsg delivers one sample to the model.
type SampleMsg Sample

// samplesDoneMsg says the sample channel was closed: the UI quits.
type samplesDoneMsg struct{}

// Model is the root bubbletea model: global keys and window size here,
// everything else in the active view's sub-model.
type Model struct {
	c       *common
	state   state
	columns columnsModel
	help    helpModel
	samples <-chan Sample
}

// New returns a model showing samples from ch (nil when samples are sent
// with Program.Send or SampleMsg).
func New(cfg Config, ch <-chan Sample) Model {
	c := newCommon(cfg)
	return Model{c: c, columns: newColumnsModel(c), help: newHelpModel(c), samples: ch}
}

// waitSample is a command that waits for the next sample; the model re-arms
// it after each one.
func waitSample(ch <-chan Sample) tea.Cmd {
	if ch == nil {
		return nil
	}
	return func() tea.Msg {
		s, ok := <-ch
		if !ok {
			return samplesDoneMsg{}
		}
		return SampleMsg(s)
	}
}

// Init starts waiting for samples.
func (m Model) Init() tea.Cmd { return waitSample(m.samples) }

// Update handles window size and global keys, then the active view's keys.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.c.width, m.c.height = msg.Width, msg.Height
		return m, nil
	case SampleMsg:
		if !m.c.paused {
			m.columns.apply(Sample(msg))
		}
		return m, waitSample(m.samples)
	case samplesDoneMsg:
		return m, tea.Quit
	case tea.KeyMsg:
		// Keys typed faster than the terminal is read arrive as one message
		// ("mc"): handle them one by one.
		if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste {
			var cmds []tea.Cmd
			var model tea.Model = m
			for _, r := range msg.Runes {
				var cmd tea.Cmd
				model, cmd = model.(Model).key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: msg.Alt})
				cmds = append(cmds, cmd)
			}
			return model, tea.Batch(cmds...)
		}
		return m.key(msg)
	}
	return m, nil
}

func (m Model) key(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	k := m.c.keys
	switch {
	case key.Matches(msg, k.Quit):
		return m, tea.Quit
	case key.Matches(msg, k.Help):
		if m.state == stateHelp {
			m.state = stateColumns
		} else {
			m.state = stateHelp
		}
		return m, nil
	case m.state == stateHelp && key.Matches(msg, k.Escape):
		m.state = stateColumns
		return m, nil
	case key.Matches(msg, k.Pause):
		m.c.paused = !m.c.paused
		m.c.act(Action{Kind: ActionPause, Paused: m.c.paused})
	case key.Matches(msg, k.Reset):
		m.columns.reset()
		m.c.act(Action{Kind: ActionReset})
	case key.Matches(msg, k.Mode):
		if m.c.mode == ModeRace {
			m.c.mode = ModeFair
		} else {
			m.c.mode = ModeRace
		}
		m.columns.forgetPeaks()
		m.c.act(Action{Kind: ActionMode, Value: m.c.mode})
	case key.Matches(msg, k.Chunk):
		m.c.chunk = nextChunk(m.c.cfg.Chunks, m.c.chunk)
		m.columns.forgetPeaks()
		m.c.act(Action{Kind: ActionChunk, Bytes: m.c.chunk})
	case key.Matches(msg, k.Fetch):
		m.c.fetch = nextChunk(m.c.cfg.Fetches, m.c.fetch)
		m.columns.forgetPeaks()
		m.c.act(Action{Kind: ActionFetch, Bytes: m.c.fetch})
	case key.Matches(msg, k.DLQ):
		m.c.dlqOn = !m.c.dlqOn
		m.c.act(Action{Kind: ActionDeadLetters, On: m.c.dlqOn})
	case key.Matches(msg, k.Filter):
		m.c.filter = nextShare(m.c.filter)
		m.columns.forgetPeaks()
		m.c.act(Action{Kind: ActionFilter, Share: m.c.filter})
	case key.Matches(msg, k.Paths):
		i := int(msg.String()[0] - '1')
		if i >= 0 && i < len(m.c.cfg.Subjects) {
			s := m.c.cfg.Subjects[i]
			m.c.enabled[s] = !m.c.enabled[s]
			en := make(map[string]bool, len(m.c.enabled))
			for k, v := range m.c.enabled {
				en[k] = v
			}
			m.c.act(Action{Kind: ActionPaths, Enabled: en})
		}
	case key.Matches(msg, k.Left):
		m.columns.offset = max(0, m.columns.offset-1)
	case key.Matches(msg, k.Right):
		_, _, fits := m.columns.layout(len(m.columns.visible()))
		m.columns.offset = min(m.columns.offset+1, max(0, len(m.columns.visible())-fits))
	}
	return m, nil
}

// nextShare returns the filter share after cur in filterShares.
func nextShare(cur float64) float64 {
	s := filterShares()
	for i, v := range s {
		if v == cur {
			return s[(i+1)%len(s)]
		}
	}
	return s[1] // off (0) goes to the first filter
}

// nextChunk returns the chunk size after cur in the cycle.
func nextChunk(chunks []int, cur int) int {
	for i, c := range chunks {
		if c == cur {
			return chunks[(i+1)%len(chunks)]
		}
	}
	return chunks[0]
}

// View draws header, active view and footer in exactly the terminal's size.
func (m Model) View() string {
	header := m.header()
	footer := m.footer()
	bodyH := max(0, m.c.height-len(header)-1)
	var body string
	switch m.state {
	case stateHelp:
		body = m.help.view(bodyH)
	default:
		body = m.columns.view(bodyH)
	}
	lines := append([]string{}, header...)
	bl := strings.Split(body, "\n")
	for i := 0; i < bodyH; i++ {
		l := ""
		if i < len(bl) {
			l = bl[i]
		}
		lines = append(lines, fit(l, m.c.width))
	}
	lines = append(lines, footer)
	if len(lines) > m.c.height {
		lines = lines[len(lines)-m.c.height:]
	}
	return strings.Join(lines, "\n")
}

// header is the title line and, in the demo, the settings and broker line.
func (m Model) header() []string {
	st := m.c.st
	s := m.columns.sample
	parts := []string{st.title.Render(m.c.cfg.Title)}
	if m.c.cfg.Kernel != "" {
		parts = append(parts, "kernel "+m.c.cfg.Kernel)
	}
	switch s.Mode() {
	case metrics.ModeEBPF:
		parts = append(parts, st.good.Render("probes: eBPF (exact)"))
	case metrics.ModeProc:
		parts = append(parts, st.warn.Render("probes: /proc (ESTIMATES)"))
	default:
		parts = append(parts, st.dim.Render("probes: waiting"))
	}
	if m.c.paused {
		parts = append(parts, st.paused.Render(" PAUSED "))
	}
	lines := []string{fit(strings.Join(parts, st.dim.Render(" │ ")), m.c.width)}
	var p2 []string
	if m.c.cfg.Demo {
		mode := "mode " + m.c.mode
		if m.c.mode == ModeFair && m.c.cfg.Rate > 0 {
			mode += " @" + metrics.SIRate(m.c.cfg.Rate) + " each"
		}
		p2 = append(p2, mode, "chunk "+chunkStr(m.c.chunk))
		if m.c.fetch > 0 {
			p2 = append(p2, "fetch "+chunkStr(m.c.fetch))
		}
		if m.c.filter > 0 && m.c.filter < 1 {
			p2 = append(p2, fmt.Sprintf("tag filter %g%% (broker: read, mmap; consumer: the rest)", m.c.filter*100))
		}
		if m.c.dlqOn {
			p2 = append(p2, "dead letters on (by reference and re-produced)")
		}
	}
	if b := s.Broker; b != nil {
		p2 = append(p2, "produce "+metrics.SIRate(b.ProduceBytesPerS),
			"LEO "+metrics.SI(float64(b.LogEndOffset)),
			fmt.Sprintf("%d seg", b.Segments))
	}
	if s.Status != "" {
		p2 = append(p2, s.Status)
	}
	if len(p2) > 0 {
		lines = append(lines, fit(st.header.Render(strings.Join(p2, " · ")), m.c.width))
	}
	return lines
}

// chunkStr formats a chunk size in binary units (4K, 64K, 1M).
func chunkStr(n int) string {
	switch {
	case n <= 0:
		return "default"
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// footer lists the keys of the current view.
func (m Model) footer() string {
	hm := help.New()
	hm.Width = m.c.width - 8
	hm.Styles.ShortKey = m.c.st.name
	hm.Styles.ShortDesc = m.c.st.label
	hm.Styles.ShortSeparator = m.c.st.dim
	hm.Styles.Ellipsis = m.c.st.dim
	var keys []key.Binding
	if m.state == stateHelp {
		keys = []key.Binding{m.c.keys.Escape, m.c.keys.Quit}
	} else {
		keys = m.c.keys.ShortHelp()
	}
	if m.c.width < 100 {
		hm.ShortSeparator = " "
	}
	legend := "  * best"
	if m.c.cfg.Demo && m.c.mode == ModeRace {
		legend += ", dim = peak of its turn"
	}
	return fit(hm.ShortHelpView(keys)+m.c.st.dim.Render(legend), m.c.width)
}

// renderFPS caps how often the renderer repaints; samples come once a
// second and keys need no more than this to feel immediate.
const renderFPS = 20

// Run shows samples from ch until the user quits, ch is closed or ctx is
// done. It owns the terminal while it runs (alternate screen).
func Run(ctx context.Context, cfg Config, ch <-chan Sample, in io.Reader, out io.Writer) error {
	opts := []tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx), tea.WithFPS(renderFPS)}
	if in != nil {
		opts = append(opts, tea.WithInput(in))
	}
	if out != nil {
		opts = append(opts, tea.WithOutput(out))
	}
	p := tea.NewProgram(New(cfg, ch), opts...)
	_, err := p.Run()
	if err != nil && ctx.Err() != nil {
		return nil // cancelled from outside: not a failure of the UI
	}
	if err != nil {
		return fmt.Errorf("terminal UI: %w", err)
	}
	return nil
}
