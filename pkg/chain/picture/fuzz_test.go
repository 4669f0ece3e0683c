package picture

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLayout builds random diagrams from the fuzzer's bytes: up to 40
// projects whose paths carry the fuzzer's text, edges between any two of
// them (self-loops, cycles and repeats included), states, links, and
// optionally given layers that may go against the edges. Every one must be
// laid out without a panic, in no more crossings than its given order, and
// drawn as well-formed SVG holding every project once, with nothing unsafe.
func FuzzLayout(f *testing.F) {
	f.Add([]byte{7, 0, 1, 0, 2, 1, 3, 2, 3}, "g/base,g/ruby,g/app", false)
	f.Add([]byte{3, 0, 1, 1, 2, 2, 0, 1, 1}, "a,b,c", false)
	f.Add([]byte{5, 4, 0, 0, 3, 1, 2, 3, 1, 0, 4}, "w<x>,\"y\"&z,javascript:alert(1),https://gitlab.example.com/p", true)
	f.Add([]byte{40, 9, 200, 17, 3, 250, 1, 1, 99, 31, 0, 12, 7, 77}, "日本,\x00,\xff\xfe,]]>", true)
	f.Fuzz(func(t *testing.T, data []byte, names string, givenLayers bool) {
		if len(data) == 0 {
			return
		}
		d := fuzzDiagram(data, names, givenLayers)
		lay, err := Arrange(d)
		if err != nil {
			t.Fatalf("a valid diagram was refused: %v", err)
		}
		if after, before := lay.Crossings(), lay.l.initialCrossings; after > before {
			t.Errorf("crossings went up: %d -> %d", before, after)
		}
		var b bytes.Buffer
		if err := lay.WriteSVG(&b, Options{Inline: givenLayers}); err != nil {
			t.Fatal(err)
		}
		p := parseSVG(t, b.Bytes())
		if len(p.unsafe) > 0 {
			t.Errorf("unsafe content: %q", p.unsafe)
		}
		if len(p.nodes) != len(d.Nodes) {
			t.Fatalf("%d boxes for %d projects", len(p.nodes), len(d.Nodes))
		}
		drawn := map[string]int{}
		for _, id := range p.nodes {
			drawn[id]++
		}
		for _, n := range d.Nodes {
			if want := xmlSafe(n.ID); drawn[want] != 1 {
				t.Errorf("project %q (drawn as %q) appears %d times", n.ID, want, drawn[want])
			}
		}
	})
}

// fuzzDiagram reads a diagram from the fuzzer's input: data[0] is the
// number of projects, then a state byte and a layer byte per project, then
// pairs of bytes naming edges; names, split at commas, gives the paths'
// text (and the links).
func fuzzDiagram(data []byte, names string, givenLayers bool) *Diagram {
	n := 1 + int(data[0])%40
	data = data[1:]
	pieces := strings.Split(names, ",")
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		v := int(data[0])
		data = data[1:]
		return v
	}
	d := &Diagram{Title: names}
	var layers [][]string
	if givenLayers {
		layers = make([][]string, 6)
	}
	for i := range n {
		piece := pieces[i%len(pieces)]
		node := Node{ID: fmt.Sprintf("%s/%d", piece, i)}
		s := next()
		if s%3 != 0 {
			node.State = states[s%len(states)]
			node.Link = piece
			node.Detail = piece
		}
		d.Nodes = append(d.Nodes, node)
		if givenLayers {
			lay := next() % len(layers)
			layers[lay] = append(layers[lay], node.ID)
		}
	}
	d.Layers = layers
	for len(data) >= 2 {
		a, b := next()%n, next()%n
		d.Edges = append(d.Edges, Edge{From: d.Nodes[a].ID, To: d.Nodes[b].ID})
	}
	return d
}

// xmlSafe is s as it reads back from the drawing: each byte of invalid
// UTF-8 and each character XML cannot hold is U+FFFD.
func xmlSafe(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		if r == utf8.RuneError && size == 1 || !inXMLRange(r) {
			r = '\uFFFD'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func inXMLRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}
