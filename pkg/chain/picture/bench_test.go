package picture

import (
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

type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
