package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Charts of a sweep, drawn with gonum/plot: medians per path of the broker
// variant, one line per path.

// SweepChart draws total CPU (data thread plus consumer) per useful GB
// against selectivity, log-log, one line per path, with the mmap/sendfile
// crossover marked, and writes a PNG to file.
func SweepChart(file string, points []SweepPoint) error {
	p := plot.New()
	p.Title.Text = "Total CPU per useful GB vs selectivity (broker filter on read/mmap, consumer filter on by-reference paths)"
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "selectivity (share of records wanted)"
	p.Y.Label.Text = "CPU seconds per useful GB (data thread + consumer)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	byPath := map[string]plotter.XYs{}
	var order []string
	for _, pt := range points {
		if pt.TotalCPU == nil || *pt.TotalCPU <= 0 {
			continue
		}
		if _, ok := byPath[pt.Path]; !ok {
			order = append(order, pt.Path)
		}
		byPath[pt.Path] = append(byPath[pt.Path], plotter.XY{X: pt.Selectivity, Y: *pt.TotalCPU / 1e9})
	}
	if len(order) == 0 {
		return fmt.Errorf("chart %s: no record measured CPU per useful GB (needs --selectivity and thread CPU counters)", file)
	}
	for i, path := range order {
		xy := byPath[path]
		slices.SortFunc(xy, func(a, b plotter.XY) int { return cmpFloat(a.X, b.X) })
		if err := addLine(p, path, xy, i); err != nil {
			return err
		}
	}
	if s, ok, _ := Crossover(points, "mmap", "sendfile"); ok {
		y := crossY(byPath["mmap"], s)
		mark, err := plotter.NewScatter(plotter.XYs{{X: s, Y: y}})
		if err != nil {
			return err
		}
		mark.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: vg.Points(5), Shape: draw.CrossGlyph{}}
		p.Add(mark)
		p.Legend.Add(fmt.Sprintf("crossover mmap/sendfile at %.2g", s), mark)
	}
	return save(p, file)
}

// crossY is the log-log interpolation of xy at x.
func crossY(xy plotter.XYs, x float64) float64 {
	for i := 0; i+1 < len(xy); i++ {
		a, b := xy[i], xy[i+1]
		if x >= a.X && x <= b.X && a.X != b.X {
			f := (math.Log(x) - math.Log(a.X)) / (math.Log(b.X) - math.Log(a.X))
			return math.Exp(math.Log(a.Y) + f*(math.Log(b.Y)-math.Log(a.Y)))
		}
	}
	return xy[0].Y
}

// ChunkChart draws throughput and data-thread CPU per GB against chunk
// size, one line per path and variant, in two panels stacked in one PNG.
func ChunkChart(file string, sums []Summary) error {
	tp, cpu := plot.New(), plot.New()
	tp.Title.Text = "Throughput vs chunk size"
	tp.Y.Label.Text = "GB/s"
	cpu.Title.Text = "Data-thread CPU per GB vs chunk size"
	cpu.Y.Label.Text = "CPU seconds per GB"
	for _, p := range []*plot.Plot{tp, cpu} {
		p.X.Label.Text = "chunk (bytes per syscall)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = chunkTicks{}
		p.Legend.Top = true
	}
	type line struct{ tp, cpu plotter.XYs }
	lines := map[string]*line{}
	var order []string
	fetches := map[int32]bool{}
	for _, s := range sums {
		if s.Fetch > 0 {
			fetches[s.Fetch] = true
		}
	}
	for _, s := range sums {
		name := s.Path + " " + s.Variant
		if len(fetches) > 1 && s.Fetch > 0 {
			name += " fetch " + fetchLabel(s.Fetch)
		}
		l, ok := lines[name]
		if !ok {
			l = &line{}
			lines[name] = l
			order = append(order, name)
		}
		l.tp = append(l.tp, plotter.XY{X: float64(s.Chunk), Y: s.GBps})
		if s.CPUNsPerGB != nil {
			l.cpu = append(l.cpu, plotter.XY{X: float64(s.Chunk), Y: *s.CPUNsPerGB / 1e9})
		}
	}
	for i, name := range order {
		l := lines[name]
		for _, xy := range []plotter.XYs{l.tp, l.cpu} {
			slices.SortFunc(xy, func(a, b plotter.XY) int { return cmpFloat(a.X, b.X) })
		}
		if err := addLine(tp, name, l.tp, i); err != nil {
			return err
		}
		if len(l.cpu) > 0 {
			if err := addLine(cpu, name, l.cpu, i); err != nil {
				return err
			}
		}
	}
	img := vgimg.New(vg.Points(900), vg.Points(1000))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadX: vg.Points(4), PadY: vg.Points(8)}
	canvases := plot.Align([][]*plot.Plot{{tp}, {cpu}}, tiles, dc)
	tp.Draw(canvases[0][0])
	cpu.Draw(canvases[1][0])
	return writePNG(file, img)
}

// chunkTicks labels chunk sizes in binary units.
type chunkTicks struct{}

func (chunkTicks) Ticks(min, max float64) []plot.Tick {
	var t []plot.Tick
	for c := 1024.0; c <= max*1.01; c *= 4 {
		if c >= min*0.99 {
			t = append(t, plot.Tick{Value: c, Label: sizeLabel(c)})
		}
	}
	return t
}

func sizeLabel(c float64) string {
	switch {
	case c >= 1<<20:
		return fmt.Sprintf("%gMiB", c/(1<<20))
	case c >= 1<<10:
		return fmt.Sprintf("%gKiB", c/(1<<10))
	}
	return fmt.Sprintf("%gB", c)
}

func addLine(p *plot.Plot, name string, xy plotter.XYs, i int) error {
	l, s, err := plotter.NewLinePoints(xy)
	if err != nil {
		return fmt.Errorf("chart line %s: %w", name, err)
	}
	l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
	l.Dashes = plotutil.Dashes(i / 7)
	s.Shape = plotutil.Shape(i)
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

func save(p *plot.Plot, file string) error {
	if err := p.Save(11*vg.Inch, 7*vg.Inch, file); err != nil {
		return fmt.Errorf("write chart %s: %w", file, err)
	}
	return nil
}

func writePNG(file string, img *vgimg.Canvas) error {
	f, err := createFile(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write chart %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write chart %s: %w", file, err)
	}
	return nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func createFile(name string) (*os.File, error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("create chart: %w", err)
	}
	return f, nil
}
