package tui

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	_ "github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
)

// loadSamples reads a recorded sample file (one JSON Sample per line).
func loadSamples(t testing.TB, path string) []Sample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open fixture: %v", err)
	}
	defer f.Close()
	var out []Sample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var s Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("%s: bad sample line: %v", path, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no samples", path)
	}
	return out
}

// asciiRenderer renders without colours, so golden files are stable.
func asciiRenderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(termenv.Ascii)
	return r
}

func demoConfig(ctl Controller) Config {
	return Config{
		Title:      "copyscope demo",
		Kernel:     "6.18.44",
		Demo:       true,
		Subjects:   []string{"read", "mmap", "sendfile", "splice", "zerocopy"},
		Mode:       "fair",
		Rate:       200e6,
		Chunk:      64 << 10,
		Renderer:   asciiRenderer(),
		Controller: ctl,
	}
}

// runModel drives a model through teatest at a fixed size: every sample,
// then the keys, then quit; it returns the final model.
func runModel(t *testing.T, m Model, w, h int, samples []Sample, keys string) Model {
	t.Helper()
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(w, h))
	for _, s := range samples {
		tm.Send(SampleMsg(s))
	}
	for _, k := range keys {
		tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{k}})
	}
	if err := tm.Quit(); err != nil {
		t.Fatalf("quit: %v", err)
	}
	return tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(Model)
}

func TestRenderSynthetic(t *testing.T) {
	samples := loadSamples(t, "testdata/synthetic.jsonl")
	for _, sz := range [][2]int{{120, 40}, {80, 24}} {
		m := runModel(t, New(demoConfig(nil), nil), sz[0], sz[1], samples, "")
		t.Logf("\n%s", m.View())
	}
	_ = strings.Join
}
