package picture

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// parsed is what a test reads back from a drawing through encoding/xml.
type parsed struct {
	root     string
	nodes    []string          // data-id of each node's group, in document order
	states   map[string]string // data-id -> data-state
	links    map[string]string // data-id -> href of its link
	titles   []string          // text of every <title>
	texts    []string          // text of every <text>
	elements map[string]int    // local name -> count
	// unsafe lists what must never be in the drawing: script-capable
	// elements, event handler and style attributes, non-http(s) links.
	unsafe []string
	// strokes counts the stroke colours of the paths.
	strokes map[string]int
}

// parseSVG parses data strictly as XML and fails the test when it is not
// well-formed or not an SVG document.
func parseSVG(t testing.TB, data []byte) parsed {
	t.Helper()
	p := parsed{states: map[string]string{}, links: map[string]string{}, elements: map[string]int{}, strokes: map[string]int{}}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var stack []xml.StartElement
	var node string // the node group the decoder is in
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, data)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				p.root = tok.Name.Local
				if tok.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root element in namespace %q, want the SVG namespace", tok.Name.Space)
				}
			}
			stack = append(stack, tok)
			text.Reset()
			p.elements[tok.Name.Local]++
			switch strings.ToLower(tok.Name.Local) {
			case "script", "foreignobject", "style", "iframe", "object", "embed", "image", "use", "animate", "set", "handler":
				p.unsafe = append(p.unsafe, "element "+tok.Name.Local)
			}
			attrs := map[string]string{}
			for _, a := range tok.Attr {
				attrs[a.Name.Local] = a.Value
				name := strings.ToLower(a.Name.Local)
				if strings.HasPrefix(name, "on") || name == "style" {
					p.unsafe = append(p.unsafe, "attribute "+a.Name.Local+"="+a.Value)
				}
				if name == "href" && !strings.HasPrefix(a.Value, "http://") && !strings.HasPrefix(a.Value, "https://") {
					p.unsafe = append(p.unsafe, "link "+a.Value)
				}
			}
			if tok.Name.Local == "g" && attrs["class"] == "node" {
				node = attrs["data-id"]
				p.nodes = append(p.nodes, node)
				p.states[node] = attrs["data-state"]
			}
			if tok.Name.Local == "a" {
				p.links[node] = attrs["href"]
			}
			if tok.Name.Local == "path" && attrs["stroke"] != "" {
				p.strokes[attrs["stroke"]]++
			}
		case xml.CharData:
			text.Write(tok)
		case xml.EndElement:
			switch tok.Name.Local {
			case "title":
				p.titles = append(p.titles, text.String())
			case "text":
				p.texts = append(p.texts, text.String())
			}
			stack = stack[:len(stack)-1]
		}
	}
	if p.root != "svg" {
		t.Fatalf("root element %q, want svg", p.root)
	}
	return p
}

func render(t testing.TB, d *Diagram, o Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteSVG(&b, d, o); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSVGIsWellFormedAndHoldsEveryProject(t *testing.T) {
	for name, d := range map[string]*Diagram{
		"plan7":           plan7(),
		"graph120":        chainGraph(120, 7),
		"run-every-state": runEveryState(),
		"empty":           {Title: "nothing"},
		"cycles":          cycles(),
	} {
		for _, inline := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/inline=%v", name, inline), func(t *testing.T) {
				out := render(t, d, Options{Inline: inline})
				if got := bytes.HasPrefix(out, []byte("<?xml")); got == inline {
					t.Errorf("XML declaration present: %v, want %v", got, !inline)
				}
				p := parseSVG(t, out)
				if len(p.unsafe) > 0 {
					t.Errorf("unsafe content: %q", p.unsafe)
				}
				seen := map[string]int{}
				for _, id := range p.nodes {
					seen[id]++
				}
				for _, n := range d.Nodes {
					if seen[n.ID] != 1 {
						t.Errorf("project %q drawn %d times, want once", n.ID, seen[n.ID])
					}
					if p.states[n.ID] != string(n.State) {
						t.Errorf("project %q: data-state %q, want %q", n.ID, p.states[n.ID], n.State)
					}
				}
				if len(p.nodes) != len(d.Nodes) {
					t.Errorf("%d boxes, want %d", len(p.nodes), len(d.Nodes))
				}
				// The full path is the tooltip of each box.
				for _, n := range d.Nodes {
					found := false
					for _, title := range p.titles {
						if strings.SplitN(title, "\n", 2)[0] == n.ID {
							found = true
						}
					}
					if !found {
						t.Errorf("no tooltip starting with the full path %q", n.ID)
					}
				}
			})
		}
	}
}

func TestSVGIsDeterministic(t *testing.T) {
	for name, d := range map[string]*Diagram{"plan7": plan7(), "graph120": chainGraph(120, 7),
		"run": runEveryState(), "cycles": cycles()} {
		first := render(t, d, Options{})
		for range 5 {
			if again := render(t, d, Options{}); !bytes.Equal(first, again) {
				t.Fatalf("%s: two drawings of the same diagram differ", name)
			}
		}
	}
}

func TestRunPictureShowsEveryStateAsColourAndWord(t *testing.T) {
	d := runEveryState()
	p := parseSVG(t, render(t, d, Options{Inline: true}))
	texts := strings.Join(p.texts, "\n")
	for _, s := range states {
		word := looks[s].word
		if !strings.Contains(texts, "\n"+word+"\n") {
			t.Errorf("state %s: the word %q is not drawn in a box", s, word)
		}
		if !strings.Contains(texts, word+" ") {
			t.Errorf("state %s: the legend does not name %q with its count", s, word)
		}
	}
	for _, n := range d.Nodes {
		if n.Link != "" && p.links[n.ID] != n.Link {
			t.Errorf("%s: link %q, want %q", n.ID, p.links[n.ID], n.Link)
		}
		if n.Link == "" && p.links[n.ID] != "" {
			t.Errorf("%s: link %q without a Link", n.ID, p.links[n.ID])
		}
	}
	// Each state has a colour of its own (the word tells the states apart
	// for people who cannot).
	seen := map[look]State{}
	for _, s := range states {
		lk := looks[s]
		lk.word = ""
		if other, dup := seen[lk]; dup {
			t.Errorf("states %s and %s are drawn alike", s, other)
		}
		seen[lk] = s
	}
}

// TestSVGEscapesWhatComesFromGitLab draws project paths, details and links
// that try to break out of the XML or run a script: the drawing stays
// well-formed, holds no script, event handler, style or foreign content,
// shows every path as it is, and links only to http(s) URLs.
func TestSVGEscapesWhatComesFromGitLab(t *testing.T) {
	attacks := []string{
		`g/<script>alert(1)</script>`,
		`g/"><script>alert(1)</script>`,
		`g/' onmouseover='alert(1)`,
		`g/a&b;&amp;&#x3c;`,
		`g/]]><x>`,
		`g/<!--comment-->`,
		`g/<?xml-stylesheet href="x"?>`,
		`g/<![CDATA[x]]>`,
		`g/<foreignObject><iframe src="javascript:alert(1)"/></foreignObject>`,
		"g/tab\tnewline\ncr\r",
		`g/ünïcödé/日本語のプロジェクト名/😀`,
	}
	badLinks := []string{
		"javascript:alert(1)",
		"JaVaScRiPt:alert(document.domain)",
		" javascript:alert(1)",
		"java\tscript:alert(1)",
		"javascript://gitlab.example.com/%0aalert(1)",
		"data:text/html,<script>alert(1)</script>",
		"vbscript:msgbox(1)",
		"//evil.example.com/pipelines/1",
		"/g/p/-/pipelines/1",
		"https:/no-host",
		"http://",
		"file:///etc/passwd",
		"https://gitlab.example.com/a b",
		"\x00https://gitlab.example.com/",
	}
	d := &Diagram{Title: `run <script>alert("title")</script> & co`}
	for i, id := range attacks {
		n := Node{ID: id, State: StateFailed, Detail: `reason: </title><script>alert(1)</script>`}
		switch {
		case i < len(badLinks):
			n.Link = badLinks[i]
		}
		d.Nodes = append(d.Nodes, n)
		if i > 0 {
			d.Edges = append(d.Edges, Edge{From: attacks[i-1], To: id})
		}
	}
	for i := len(attacks); i < len(badLinks); i++ {
		d.Nodes = append(d.Nodes, Node{ID: fmt.Sprintf("g/bad-link-%d", i), State: StateRunning, Link: badLinks[i]})
	}
	good := `https://gitlab.example.com/g/p/-/pipelines/7?a=1&b="2"<3>'4'`
	d.Nodes = append(d.Nodes, Node{ID: "g/good-link", State: StateSuccess, Link: good})
	d.Nodes = append(d.Nodes, Node{ID: "g/http-link", State: StateSuccess, Link: "http://gitlab.internal:8080/g/p/-/pipelines/8"})

	for _, inline := range []bool{false, true} {
		out := render(t, d, Options{Inline: inline})
		p := parseSVG(t, out)
		if len(p.unsafe) > 0 {
			t.Errorf("unsafe content: %q", p.unsafe)
		}
		if n := p.elements["a"]; n != 2 {
			t.Errorf("%d links, want 2 (only the http and https URLs)", n)
		}
		if got := p.links["g/good-link"]; !strings.HasPrefix(got, "https://gitlab.example.com/g/p/-/pipelines/7?a=1&b=") {
			t.Errorf("good link became %q", got)
		}
		if got := p.links["g/http-link"]; got != "http://gitlab.internal:8080/g/p/-/pipelines/8" {
			t.Errorf("http link became %q", got)
		}
		for _, id := range attacks {
			if _, ok := p.states[id]; !ok {
				t.Errorf("path %q is not drawn as itself (data-id)", id)
			}
		}
		if strings.Contains(string(out), "<script") || strings.Contains(string(out), "<iframe") {
			t.Error("a tag of the input reached the output unescaped")
		}
		if p.elements["title"] != len(d.Nodes)+1 {
			t.Errorf("%d title elements, want %d: an input closed or opened one", p.elements["title"], len(d.Nodes)+1)
		}
	}
}

func TestSVGReplacesWhatXMLCannotHold(t *testing.T) {
	d := &Diagram{Nodes: []Node{{ID: "g/nul\x00byte"}, {ID: "g/bell\x07"}, {ID: "g/bad-utf8-\xff\xfe"}, {ID: "g/\uFFFE"}}}
	p := parseSVG(t, render(t, d, Options{}))
	if len(p.nodes) != len(d.Nodes) {
		t.Fatalf("%d boxes, want %d", len(p.nodes), len(d.Nodes))
	}
	for _, id := range p.nodes {
		if !strings.ContainsRune(id, '\uFFFD') {
			t.Errorf("data-id %q: the character XML cannot hold was not replaced", id)
		}
	}
}

// cycles is a scanned graph with a cycle of three, a self-loop and a
// cycle of two, beside projects in no cycle.
func cycles() *Diagram {
	return &Diagram{
		Nodes: []Node{{ID: "g/a"}, {ID: "g/b"}, {ID: "g/c"}, {ID: "g/self"}, {ID: "g/x"}, {ID: "g/y"},
			{ID: "g/base"}, {ID: "g/app"}},
		Edges: []Edge{{"g/a", "g/b"}, {"g/b", "g/c"}, {"g/c", "g/a"}, {"g/self", "g/self"},
			{"g/x", "g/y"}, {"g/y", "g/x"}, {"g/base", "g/a"}, {"g/base", "g/app"}, {"g/c", "g/app"}},
	}
}

func TestCyclesAreDrawnAndMarked(t *testing.T) {
	d := cycles()
	lay, err := Arrange(d)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := lay.WriteSVG(&b, Options{}); err != nil {
		t.Fatal(err)
	}
	p := parseSVG(t, b.Bytes())
	// Six cycle edges: a->b->c->a, self, x->y->x; each a line and an
	// arrowhead, plus the legend's sample line.
	if got := p.strokes[cycleColour]; got != 6+1 {
		t.Errorf("%d paths in the cycle colour, want 7 (6 cycle edges and the legend)", got)
	}
	if !strings.Contains(strings.Join(p.texts, "\n"), "dependency cycle") {
		t.Error("the legend does not name the cycle mark")
	}
	for _, id := range []string{"g/a", "g/b", "g/c", "g/self", "g/x", "g/y"} {
		if !lay.inCycle[indexOf(d, id)] {
			t.Errorf("%s not marked as in a cycle", id)
		}
	}
	for _, id := range []string{"g/base", "g/app"} {
		if lay.inCycle[indexOf(d, id)] {
			t.Errorf("%s marked as in a cycle", id)
		}
	}
	// Every edge but the one closing a cycle runs left to right.
	for _, r := range lay.l.routes {
		if !r.cycle && (r.reversed || r.flat) {
			t.Errorf("edge %s -> %s is in no cycle but drawn backwards", d.Nodes[r.from].ID, d.Nodes[r.to].ID)
		}
	}
}

func indexOf(d *Diagram, id string) int {
	for i, n := range d.Nodes {
		if n.ID == id {
			return i
		}
	}
	return -1
}

func TestArrangeNamesTheFieldOfABadDiagram(t *testing.T) {
	for _, tc := range []struct {
		d    Diagram
		want string
	}{
		{Diagram{Nodes: []Node{{ID: "a"}, {ID: "a"}}}, `Diagram.Nodes[1].ID "a": appears twice`},
		{Diagram{Nodes: []Node{{ID: "a", State: "bogus"}}}, `Diagram.Nodes[0].State "bogus": expected one of`},
		{Diagram{Nodes: []Node{{ID: "a"}}, Edges: []Edge{{"a", "b"}}}, `Diagram.Edges[0].To "b": expected the ID of a node`},
		{Diagram{Nodes: []Node{{ID: "a"}}, Edges: []Edge{{"c", "a"}}}, `Diagram.Edges[0].From "c": expected the ID of a node`},
		{Diagram{Nodes: []Node{{ID: "a"}}, Layers: [][]string{{"a", "z"}}}, `Diagram.Layers[0][1] "z": expected the ID of a node`},
		{Diagram{Nodes: []Node{{ID: "a"}}, Layers: [][]string{{"a"}, {"a"}}}, `Diagram.Layers[1][0] "a": is in two places`},
		{Diagram{Nodes: []Node{{ID: "a"}, {ID: "b"}}, Layers: [][]string{{"a"}}}, `Diagram.Nodes[1].ID "b": is in no layer`},
	} {
		_, err := Arrange(&tc.d)
		var ie *inputerr.Error
		if !errors.As(err, &ie) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("error %v, want an input error starting %q", err, tc.want)
		}
	}
}

func TestGivenLayersMayGoAgainstTheEdges(t *testing.T) {
	// A run's frozen plan is taken as it is: an edge within a wave or
	// backwards is drawn (an arc, a reversed edge), not refused.
	d := &Diagram{
		Nodes:  []Node{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}},
		Edges:  []Edge{{"a", "b"}, {"c", "a"}, {"b", "d"}, {"a", "a"}},
		Layers: [][]string{{"a", "b"}, {}, {"c", "d"}},
	}
	lay, err := Arrange(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(lay.l.layers) != 2 {
		t.Errorf("%d columns, want 2 (the empty wave draws none)", len(lay.l.layers))
	}
	p := parseSVG(t, render(t, d, Options{}))
	if len(p.nodes) != 4 {
		t.Errorf("%d boxes, want 4", len(p.nodes))
	}
}

func TestShortenKeepsTheProjectName(t *testing.T) {
	for _, tc := range []struct {
		path string
		max  int
		want string
	}{
		{"g/base", 32, "g/base"},
		{"platform/images/runtime/python-3.12-slim", 32, "…/runtime/python-3.12-slim"},
		{"platform/images/runtime/python-3.12-slim", 20, "…/python-3.12-slim"},
		{"apps/payments/billing-service-with-a-very-long-project-name", 32, "…/billing-service…g-project-name"},
		{"a/日本語のとても長いプロジェクトの名前です", 16, "…/日本語…前です"},
		{"x/abcdefghijklmnop", 4, "…"},
	} {
		got := shorten(tc.path, tc.max)
		if got != tc.want {
			t.Errorf("shorten(%q, %d) = %q, want %q", tc.path, tc.max, got, tc.want)
		}
		if textWidth(got) > tc.max && tc.max >= 3 {
			t.Errorf("shorten(%q, %d) = %q is %d columns wide", tc.path, tc.max, got, textWidth(got))
		}
	}
}

func TestSafeLink(t *testing.T) {
	for link, want := range map[string]string{
		"https://gitlab.example.com/g/p/-/pipelines/1": "https://gitlab.example.com/g/p/-/pipelines/1",
		"http://10.0.0.1:8080/g/p/-/pipelines/1":       "http://10.0.0.1:8080/g/p/-/pipelines/1",
		"HTTPS://gitlab.example.com/x":                 "https://gitlab.example.com/x",
		"javascript:alert(1)":                          "",
		"https://gitlab.example.com/a\nb":              "",
		"mailto:a@example.com":                         "",
		"https:opaque":                                 "",
		"":                                             "",
	} {
		if got := safeLink(link); got != want {
			t.Errorf("safeLink(%q) = %q, want %q", link, got, want)
		}
	}
}

// TestRunPictureKeepsItsShapeAsTheRunProgresses: a run page redraws the
// picture as states change; the boxes and edges must stay where they are,
// so that the eye can follow a project from one refresh to the next.
func TestRunPictureKeepsItsShapeAsTheRunProgresses(t *testing.T) {
	start := runEveryState()
	for i := range start.Nodes {
		start.Nodes[i].State, start.Nodes[i].Link, start.Nodes[i].Detail = StateWaiting, "", ""
	}
	later := runEveryState()
	geometry := func(d *Diagram) string {
		lay, err := Arrange(d)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range lay.l.vertices {
			fmt.Fprintf(&b, "%d: layer %d pos %d y %.2f\n", i, v.layer, v.pos, v.y)
		}
		fmt.Fprintf(&b, "columns %v %v top %v", lay.colX, lay.colW, lay.graphTop)
		return b.String()
	}
	if a, b := geometry(start), geometry(later); a != b {
		t.Errorf("the picture moved when states changed:\n%s\nvs\n%s", a, b)
	}
}

func TestLongTitleIsCutButKept(t *testing.T) {
	title := strings.Repeat("very-long-title-", 20)
	p := parseSVG(t, render(t, &Diagram{Title: title, Nodes: nodes("a")}, Options{}))
	if p.titles[0] != title {
		t.Errorf("<title> %q, want the whole title", p.titles[0])
	}
	if got := []rune(p.texts[0]); len(got) != maxTitleChars || got[len(got)-1] != '…' {
		t.Errorf("first line %q: want %d characters ending in …", p.texts[0], maxTitleChars)
	}
}
