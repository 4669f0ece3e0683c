package main

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/opsctl/opsctl/internal/browsertest"
	"github.com/opsctl/opsctl/internal/testenv"
)

// svgGroup is a <g> of the picture: the project boxes are those of class
// "node", inside the group of class "nodes".
type svgGroup struct {
	Class  string     `xml:"class,attr"`
	ID     string     `xml:"data-id,attr"`
	Groups []svgGroup `xml:"g"`
}

// svgNodes decodes out as an SVG document (failing the test when it is not
// well-formed XML with an svg root in the SVG namespace) and returns the
// data-id of every project box, sorted.
func svgNodes(t *testing.T, what, out string) []string {
	t.Helper()
	var doc struct {
		XMLName xml.Name
		Groups  []svgGroup `xml:"g"`
	}
	dec := xml.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: not well-formed SVG: %v\n%.400s", what, err, out)
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if text, ok := tok.(xml.CharData); err != nil || !ok || strings.TrimSpace(string(text)) != "" {
			t.Fatalf("%s: more than white space after the svg element: %v %v", what, tok, err)
		}
	}
	if doc.XMLName.Space != "http://www.w3.org/2000/svg" || doc.XMLName.Local != "svg" {
		t.Errorf("%s: root element %v, want svg in the SVG namespace", what, doc.XMLName)
	}
	var ids []string
	for _, g := range doc.Groups {
		for _, n := range g.Groups {
			if g.Class == "nodes" && n.Class == "node" {
				ids = append(ids, n.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// `chain scan -o svg` and `chain plan -o svg` write a standalone SVG
// holding every project of the graph / the plan, which Chromium draws.
func TestChainSVGOutput(t *testing.T) {
	scan, stderr, code := testenv.Run(t, "", "chain", "scan", "--dir", examplesDir(), "-o", "svg")
	if code != 0 || !strings.HasPrefix(scan, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Fatalf("scan -o svg: exit %d, stderr %q\n%.300s", code, stderr, scan)
	}
	all := []string{"ops/app", "ops/base", "ops/deploy", "ops/python", "ops/ruby", "tools/linter"}
	if got := svgNodes(t, "scan -o svg", scan); !reflect.DeepEqual(got, all) {
		t.Errorf("scan -o svg draws %q, want %q", got, all)
	}
	plan, stderr, code := testenv.Run(t, "", "chain", "plan", "--dir", examplesDir(), "ops/ruby", "-o", "svg")
	if code != 0 {
		t.Fatalf("plan -o svg: exit %d, stderr %q", code, stderr)
	}
	if got, want := svgNodes(t, "plan ops/ruby -o svg", plan), []string{"ops/app", "ops/deploy", "ops/ruby"}; !reflect.DeepEqual(got, want) {
		t.Errorf("plan ops/ruby -o svg draws %q, want %q", got, want)
	}
	for _, wave := range []string{"wave 1", "wave 3"} {
		if !strings.Contains(plan, ">"+wave+"<") {
			t.Errorf("plan -o svg names no %q column", wave)
		}
	}

	// A cycle: the picture is still drawn, the cycle marked, exit 1.
	dir := writeFiles(t, map[string]string{"g/a/.gitlab-deps": "g/b\n", "g/b/.gitlab-deps": "g/a\n"})
	cyc, stderr, code := testenv.Run(t, "", "chain", "scan", "--dir", dir, "-o", "svg")
	if code != 1 || !strings.Contains(stderr, "dependency cycle") || !strings.Contains(cyc, "in a dependency cycle") {
		t.Errorf("scan -o svg of a cycle: exit %d, stderr %q", code, stderr)
	}
	if got := svgNodes(t, "scan -o svg of a cycle", cyc); !reflect.DeepEqual(got, []string{"g/a", "g/b"}) {
		t.Errorf("scan -o svg of a cycle draws %q", got)
	}

	// Chromium draws both files: a box with its path in a real font for
	// every project.
	files := map[string]string{"/scan.svg": scan, "/plan.svg": plan}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		io.WriteString(w, body)
	}))
	defer srv.Close()
	ctx := browsertest.New(t, 1000, 700)
	for path, want := range map[string]int{"/scan.svg": len(all), "/plan.svg": 3} {
		browsertest.Do(t, ctx, "opening "+path, chromedp.Navigate(srv.URL+path))
		drawn := browsertest.Value(t, ctx, "measuring the boxes of "+path, chromedp.Evaluate[[]float64](
			`Array.from(document.querySelectorAll('g.node')).map(g =>
			   Math.min(g.querySelector('rect').getBBox().width, g.querySelector('text').getComputedTextLength()))`))
		if len(drawn) != want {
			t.Errorf("%s: Chromium drew %d boxes, want %d", path, len(drawn), want)
		}
		for i, w := range drawn {
			if w <= 0 {
				t.Errorf("%s: box %d has no size or no text", path, i)
			}
		}
		browsertest.KeepArtifact(t, strings.TrimPrefix(path, "/")+".png", browsertest.ElementScreenshot(t, ctx, "svg"))
	}
}
