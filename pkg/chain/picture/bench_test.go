package picture

import (
	"fmt"
	"io"
	"testing"
)

// BenchmarkLayout1000 lays out and draws a scanned graph of 1,000
// projects (chainGraph: five tiers, long edges, paths in scan order), as
// `chain scan -o svg` does for a large group. It reports the crossings of
// the scan's order and of the drawing, and the size of the SVG.
func BenchmarkLayout1000(b *testing.B) {
	d := chainGraph(1000, 7)
	var lay *Layout
	var size countingWriter
	for b.Loop() {
		var err error
		if lay, err = Arrange(d); err != nil {
			b.Fatal(err)
		}
		size = 0
		if err := lay.WriteSVG(&size, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(lay.l.initialCrossings), "crossings-before")
	b.ReportMetric(float64(lay.Crossings()), "crossings-after")
	b.ReportMetric(float64(size), "svg-bytes")
}

// BenchmarkLayoutRun120 draws a run of 120 projects, what a run page
// draws at every refresh.
func BenchmarkLayoutRun120(b *testing.B) {
	d := chainGraph(120, 7)
	for i := range d.Nodes {
		d.Nodes[i].State = states[i%len(states)]
		d.Nodes[i].Link = "https://gitlab.example.com/" + d.Nodes[i].ID + "/-/pipelines/1"
	}
	for b.Loop() {
		if err := WriteSVG(io.Discard, d, Options{Inline: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLayoutDeepChain is the worst case of the dummies: a chain of
// 1,000 projects, each also built on the first, so that the edges from the
// first span every layer (499,500 dummy vertices). Drawn in seconds, not
// hung; no real chain of images is this deep.
func BenchmarkLayoutDeepChain(b *testing.B) {
	d := &Diagram{}
	for i := range 1000 {
		d.Nodes = append(d.Nodes, Node{ID: fmt.Sprintf("g/p%04d", i)})
		if i > 0 {
			d.Edges = append(d.Edges, Edge{d.Nodes[i-1].ID, d.Nodes[i].ID}, Edge{d.Nodes[0].ID, d.Nodes[i].ID})
		}
	}
	var size countingWriter
	for b.Loop() {
		size = 0
		if err := WriteSVG(&size, d, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size), "svg-bytes")
}

type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
