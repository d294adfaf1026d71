package tui

import "github.com/charmbracelet/bubbles/key"

// keyMap is every key the UI answers to; bindings that do not apply to the
// current use (demo-only keys in watch) are disabled so help hides them.
type keyMap struct {
	Quit   key.Binding
	Pause  key.Binding
	Reset  key.Binding
	Mode   key.Binding
	Chunk  key.Binding
	Fetch  key.Binding
	Filter key.Binding
	DLQ    key.Binding
	Paths  key.Binding
	Left   key.Binding
	Right  key.Binding
	Help   key.Binding
	Escape key.Binding
}

func newKeyMap(demo bool) keyMap {
	k := keyMap{
		Quit:   key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
		Pause:  key.NewBinding(key.WithKeys("p", " "), key.WithHelp("p", "pause view")),
		Reset:  key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "reset")),
		Mode:   key.NewBinding(key.WithKeys("m"), key.WithHelp("m", "mode")),
		Chunk:  key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "chunk")),
		Fetch:  key.NewBinding(key.WithKeys("f"), key.WithHelp("f", "fetch size")),
		Filter: key.NewBinding(key.WithKeys("t"), key.WithHelp("t", "tag filter share")),
		DLQ:    key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "dead letters")),
		Paths:  key.NewBinding(key.WithKeys("1", "2", "3", "4", "5", "6", "7", "8", "9"), key.WithHelp("1-9", "paths")),
		Left:   key.NewBinding(key.WithKeys("left", "h"), key.WithHelp("←/→", "scroll")),
		Right:  key.NewBinding(key.WithKeys("right", "l")),
		Help:   key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Escape: key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
	}
	if !demo {
		k.Mode.SetEnabled(false)
		k.Chunk.SetEnabled(false)
		k.Fetch.SetEnabled(false)
		k.Filter.SetEnabled(false)
		k.DLQ.SetEnabled(false)
		k.Paths.SetEnabled(false)
	}
	return k
}

// ShortHelp is the footer of the columns view.
func (k keyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Quit, k.Pause, k.Reset, k.Mode, k.Chunk, k.Paths, k.Left, k.Help}
}

// FullHelp is the key list of the help view.
func (k keyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Quit, k.Pause, k.Reset, k.Help},
		{k.Mode, k.Chunk, k.Fetch, k.Filter, k.DLQ, k.Paths, k.Left},
	}
}
