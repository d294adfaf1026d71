package tui

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
)

// loadSamples reads a recorded sample file (one JSON Sample per line).
func loadSamples(t testing.TB, path string) []Sample {
	t.Helper()
	out, err := readSamples(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readSamples(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open fixture: %w", err)
	}
	defer f.Close()
	var out []Sample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var s Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s: bad sample line: %w", path, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no samples (record one with copyscope demo --record)", path)
	}
	return out, nil
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

func watchConfig() Config {
	return Config{Title: "copyscope watch", Kernel: "6.18.44", Renderer: asciiRenderer()}
}

// TestGolden compares whole screens, driven by recorded samples, with the
// files in testdata (go test ./tui -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	watch := loadSamples(t, "testdata/watch_proc.jsonl")
	watchBPF := loadSamples(t, "testdata/watch_ebpf.jsonl")
	race := loadSamples(t, "testdata/demo_race_samples.jsonl")
	raceCfg := demoConfig(nil)
	raceCfg.Mode = "race"
	cases := []struct {
		name    string
		cfg     Config
		w, h    int
		samples []Sample
		keys    string
	}{
		{"demo_120x40", demoConfig(nil), 120, 40, demo, ""},
		{"demo_80x24", demoConfig(nil), 80, 24, demo, ""},
		{"demo_help_80x24", demoConfig(nil), 80, 24, demo, "?"},
		{"demo_paused_80x24", demoConfig(nil), 80, 24, demo, "p"},
		{"demo_race_120x40", raceCfg, 120, 40, race, ""},
		{"demo_race_80x24", raceCfg, 80, 24, race, ""},
		{"watch_proc_120x40", watchConfig(), 120, 40, watch, ""},
		{"watch_proc_80x24", watchConfig(), 80, 24, watch, ""},
		{"watch_ebpf_120x40", watchConfig(), 120, 40, watchBPF, ""},
		{"watch_ebpf_80x24_scrolled", watchConfig(), 80, 24, watchBPF, "ll"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := runModel(t, New(tc.cfg, nil), tc.w, tc.h, tc.samples, tc.keys)
			golden.RequireEqual(t, []byte(m.View()))
		})
	}
}

// TestViewFitsTerminal checks that every size draws exactly the terminal:
// no line wider than it, no more lines than it has.
func TestViewFitsTerminal(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	m := New(demoConfig(nil), nil)
	for _, s := range demo {
		next, _ := m.Update(SampleMsg(s))
		m = next.(Model)
	}
	for _, sz := range [][2]int{{120, 40}, {80, 24}, {60, 20}, {200, 60}, {40, 10}, {100, 30}} {
		next, _ := m.Update(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
		m = next.(Model)
		for _, view := range []string{"columns", "help"} {
			if view == "help" {
				next, _ = m.Update(keyMsg('?'))
				m = next.(Model)
			}
			lines := strings.Split(m.View(), "\n")
			if len(lines) != sz[1] {
				t.Errorf("%dx%d %s: %d lines, want %d", sz[0], sz[1], view, len(lines), sz[1])
			}
			for i, l := range lines {
				if w := lipgloss.Width(l); w > sz[0] {
					t.Errorf("%dx%d %s: line %d is %d cells wide: %q", sz[0], sz[1], view, i, w, l)
				}
			}
		}
		next, _ = m.Update(keyMsg('?'))
		m = next.(Model)
	}
}

func keyMsg(r rune) tea.KeyMsg { return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}} }

// recorder is a Controller that keeps every action.
type recorder struct {
	mu      sync.Mutex
	actions []Action
}

func (r *recorder) Act(a Action) {
	r.mu.Lock()
	r.actions = append(r.actions, a)
	r.mu.Unlock()
}

func TestKeysTellController(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	rec := &recorder{}
	m := runModel(t, New(demoConfig(rec), nil), 120, 40, demo, "mcc3mr")
	want := []string{
		"mode race", "chunk 1M", "chunk 4K", "paths sendfile=false", "mode fair", "reset",
	}
	var got []string
	for _, a := range rec.actions {
		switch a.Kind {
		case ActionMode:
			got = append(got, "mode "+a.Value)
		case ActionChunk:
			got = append(got, "chunk "+chunkStr(a.Bytes))
		case ActionPaths:
			got = append(got, fmt.Sprintf("paths sendfile=%v", a.Enabled["sendfile"]))
		case ActionReset:
			got = append(got, "reset")
		case ActionPause:
			got = append(got, fmt.Sprintf("pause %v", a.Paused))
		}
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("actions: got %v, want %v", got, want)
	}
	v := m.View()
	if headings := strings.Split(v, "\n")[2]; strings.Contains(headings, "sendfile") {
		t.Errorf("path 3 (sendfile) toggled off but still shown:\n%s", v)
	}
	if !strings.Contains(v, "chunk 4K") || !strings.Contains(v, "mode fair") {
		t.Errorf("header does not show the new chunk and mode:\n%s", v)
	}
	if strings.Contains(v, "GB copy") {
		t.Errorf("reset did not clear the copy diagram totals:\n%s", v)
	}
}

func TestPauseFreezesNumbers(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	if len(demo) < 3 {
		t.Fatalf("fixture needs at least 3 samples, has %d", len(demo))
	}
	m := New(demoConfig(nil), nil)
	next, _ := m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	m = next.(Model)
	next, _ = m.Update(SampleMsg(demo[0]))
	m = next.(Model)
	next, _ = m.Update(keyMsg('p'))
	m = next.(Model)
	before := m.View()
	for _, s := range demo[1:] {
		next, _ = m.Update(SampleMsg(s))
		m = next.(Model)
	}
	if after := m.View(); after != before {
		t.Fatalf("paused view changed:\nbefore\n%s\nafter\n%s", before, after)
	}
	if !strings.Contains(before, "PAUSED") {
		t.Errorf("paused view does not say so:\n%s", before)
	}
	next, _ = m.Update(keyMsg('p'))
	m = next.(Model)
	next, _ = m.Update(SampleMsg(demo[len(demo)-1]))
	m = next.(Model)
	if m.View() == before {
		t.Errorf("view still frozen after resuming")
	}
}

func TestSamplesChannelDrivesModel(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	ch := make(chan Sample, len(demo))
	for _, s := range demo {
		ch <- s
	}
	close(ch) // closing the channel ends the UI
	tm := teatest.NewTestModel(t, New(demoConfig(nil), ch), teatest.WithInitialTermSize(120, 40))
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(Model)
	if fm.columns.samples != len(demo) {
		t.Fatalf("model applied %d samples from the channel, want %d", fm.columns.samples, len(demo))
	}
}

// TestPhysicsShows checks the demo fixture's story is on screen: CPU
// copies per byte for each path, the zerocopy warning, the best marks.
func TestPhysicsShows(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	m := runModel(t, New(demoConfig(nil), nil), 120, 40, demo, "")
	lines := strings.Split(m.View(), "\n")
	find := func(label string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, label) {
				return l
			}
		}
		t.Fatalf("no %q row in\n%s", label, m.View())
		return ""
	}
	if row := find("zerocopy"); !strings.Contains(row, "copied") {
		t.Errorf("zerocopy row lacks the kernel-copied warning: %q", row)
	}
	cp := strings.Fields(find("copies/byte"))
	var amps []string
	for _, f := range cp {
		if strings.Contains(f, ".") {
			amps = append(amps, strings.TrimSuffix(f, "*"))
		}
	}
	if len(amps) != 5 {
		t.Fatalf("copies/byte row has %d values, want 5: %q", len(amps), cp)
	}
	want := []string{"2.", "1.", "0.0", "0.0", "0.0"} // read, mmap, sendfile, splice, zerocopy
	for i, w := range want {
		if !strings.HasPrefix(amps[i], w) {
			t.Errorf("copies/byte of path %d = %s, want %s…", i+1, amps[i], w)
		}
	}
}

func TestNextChunk(t *testing.T) {
	cs := defaultChunks()
	for _, tc := range []struct{ cur, want int }{{4 << 10, 64 << 10}, {64 << 10, 1 << 20}, {1 << 20, 4 << 10}, {12345, 4 << 10}} {
		if got := nextChunk(cs, tc.cur); got != tc.want {
			t.Errorf("nextChunk(%d) = %d, want %d", tc.cur, got, tc.want)
		}
	}
}

// BenchmarkView is the cost of drawing one frame at 120x40 with five paths;
// ns/op times frames per second is the UI's own CPU share.
func BenchmarkView(b *testing.B) {
	demo := loadSamples(b, "testdata/demo_samples.jsonl")
	m := New(demoConfig(nil), nil)
	next, _ := m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	m = next.(Model)
	for _, s := range demo {
		next, _ = m.Update(SampleMsg(s))
		m = next.(Model)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = m.View()
	}
}

// TestKeysTypedTogether: keys that arrive in one read ("mc") all count.
func TestKeysTypedTogether(t *testing.T) {
	rec := &recorder{}
	m := New(demoConfig(rec), nil)
	next, _ := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("mc")})
	m = next.(Model)
	if len(rec.actions) != 2 || rec.actions[0].Kind != ActionMode || rec.actions[1].Kind != ActionChunk {
		t.Fatalf("actions for \"mc\": %+v, want mode then chunk", rec.actions)
	}
	if m.c.mode != "race" || m.c.chunk != 1<<20 {
		t.Errorf("after \"mc\": mode %s chunk %d, want race and 1M", m.c.mode, m.c.chunk)
	}
}

func TestFetchKeyCyclesAndShows(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	rec := &recorder{}
	cfg := demoConfig(rec)
	cfg.Fetch = 1 << 20
	m := runModel(t, New(cfg, nil), 120, 40, demo, "ff")
	var got []string
	for _, a := range rec.actions {
		if a.Kind == ActionFetch {
			got = append(got, chunkStr(a.Bytes))
		}
	}
	if want := "64M 256K"; strings.Join(got, " ") != want {
		t.Fatalf("f f sent fetch sizes %v, want %s", got, want)
	}
	if v := m.View(); !strings.Contains(strings.Split(v, "\n")[1], "fetch 256K") {
		t.Errorf("header does not show the fetch size 256K:\n%s", v)
	}
}

// TestPathKeysEight: with the three io_uring paths the demo has eight
// columns, and keys 6 to 8 toggle them like the first five.
func TestPathKeysEight(t *testing.T) {
	rec := &recorder{}
	cfg := demoConfig(rec)
	cfg.Subjects = []string{"read", "mmap", "sendfile", "splice", "zerocopy", "uring", "uring-splice", "uring-zc"}
	runModel(t, New(cfg, nil), 120, 40, nil, "689")
	var got []string
	for _, a := range rec.actions {
		if a.Kind == ActionPaths {
			got = append(got, fmt.Sprintf("uring=%v uring-zc=%v", a.Enabled["uring"], a.Enabled["uring-zc"]))
		}
	}
	if len(got) != 2 || got[0] != "uring=false uring-zc=true" || got[1] != "uring=false uring-zc=false" {
		t.Fatalf("keys 6 and 8 toggled %v, want uring then uring-zc off (9 names no path)", got)
	}
}

// TestFilterView: the t key cycles the tag filter share and the header
// says it; the filter rows appear only in samples with useful bytes.
func TestFilterView(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	rec := &recorder{}
	m := runModel(t, New(demoConfig(rec), nil), 120, 40, demo, "tt")
	var got []float64
	for _, a := range rec.actions {
		if a.Kind == ActionFilter {
			got = append(got, a.Share)
		}
	}
	if len(got) != 2 || got[0] != 0.5 || got[1] != 0.1 {
		t.Fatalf("t t sent shares %v, want [0.5 0.1]", got)
	}
	v := m.View()
	if !strings.Contains(strings.Split(v, "\n")[1], "tag filter 10%") {
		t.Errorf("header does not show the filter:\n%s", v)
	}
	if strings.Contains(v, "useful|waste") {
		t.Errorf("filter rows shown for samples without useful bytes:\n%s", v)
	}
	last := demo[len(demo)-1]
	for i := range last.Records {
		d := last.Records[i].DeliveredBytes
		if d == nil {
			continue
		}
		u, w := *d/10, *d-*d/10
		last.Records[i].UsefulBytes, last.Records[i].WastedBytes = &u, &w
	}
	m = runModel(t, New(demoConfig(rec), nil), 120, 40, append(demo, last), "")
	if v := m.View(); !strings.Contains(v, "useful|waste") || !strings.Contains(v, "s/useful GB") {
		t.Errorf("filter rows missing for samples with useful bytes:\n%s", v)
	}
}
