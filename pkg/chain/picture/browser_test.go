package picture

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/opsctl/opsctl/internal/browsertest"
)

// strictCSP is the policy a page inlining the picture can keep: nothing
// at all may load or run, inline styles included.
const strictCSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// servePicture serves the diagram as a standalone SVG document at
// /picture.svg and inlined in an HTML page at /, both under strictCSP.
func servePicture(t *testing.T, d *Diagram) (*httptest.Server, *Layout) {
	t.Helper()
	lay, err := Arrange(d)
	if err != nil {
		t.Fatal(err)
	}
	var standalone, inline bytes.Buffer
	if err := lay.WriteSVG(&standalone, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := lay.WriteSVG(&inline, Options{Inline: true}); err != nil {
		t.Fatal(err)
	}
	page := "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>picture</title></head><body>\n" +
		inline.String() + "</body></html>\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, page)
		case "/picture.svg":
			w.Header().Set("Content-Type", "image/svg+xml")
			w.Write(standalone.Bytes())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, lay
}

// TestPicturesRenderInChromium opens each picture in headless Chromium,
// standalone and inlined in a page under a strict Content-Security-Policy:
// the picture has the size it declares, every project's box is laid out
// with its path drawn in a real font, the page breaks no rule of the
// policy, and the screenshot shows the colours of the states drawn. The
// screenshots are kept (see browsertest.ArtifactsEnv) for a person to look
// at.
func TestPicturesRenderInChromium(t *testing.T) {
	ctx := browsertest.New(t, 1280, 900)
	browsertest.WatchCSP(t, ctx)
	for _, tc := range []struct {
		name    string
		diagram *Diagram
		// colours must appear in the screenshot: the states' borders.
		colours []string
	}{
		{"plan7", plan7(), []string{looks[StateNone].stroke}},
		{"graph120", chainGraph(120, 7), []string{looks[StateNone].stroke}},
		{"cycles", cycles(), []string{cycleColour}},
		{"run-every-state", runEveryState(), []string{
			looks[StateSuccess].stroke, looks[StateFailed].stroke, looks[StateRunning].stroke,
			looks[StateStopped].stroke, looks[StateCanceled].stroke}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, lay := servePicture(t, tc.diagram)
			for _, url := range []string{srv.URL + "/", srv.URL + "/picture.svg"} {
				browsertest.Do(t, ctx, "opening "+url, chromedp.Navigate(url))
				size := browsertest.Value(t, ctx, "measuring the svg", chromedp.Evaluate[[2]float64](
					`(() => { const r = document.querySelector('svg').getBoundingClientRect(); return [r.width, r.height]; })()`))
				// Chromium lays out in 1/64 px; the SVG declares 1/10 px.
				if abs(size[0]-lay.width) > 0.1 || abs(size[1]-lay.height) > 0.1 || size[0] == 0 {
					t.Errorf("%s: svg drawn %vx%v, declared %sx%s", url, size[0], size[1], num(lay.width), num(lay.height))
				}
				// Each box and each path's text must have a size of its own:
				// a text with no font to draw it has no length.
				boxes := browsertest.Value(t, ctx, "measuring the boxes", chromedp.Evaluate[[]float64](
					`Array.from(document.querySelectorAll('g.node')).map(g => {
					   const r = g.querySelector('rect').getBBox(), t = g.querySelector('text');
					   return Math.min(r.width, r.height, t.getComputedTextLength()); })`))
				if len(boxes) != len(tc.diagram.Nodes) {
					t.Errorf("%s: %d boxes drawn, want %d", url, len(boxes), len(tc.diagram.Nodes))
				}
				for i, b := range boxes {
					if b <= 0 {
						t.Errorf("%s: box %d has no size or no text (%v)", url, i, b)
					}
				}
				if v := browsertest.CSPViolations(t, ctx); len(v) > 0 {
					t.Errorf("%s: Content-Security-Policy violations: %q", url, v)
				}
				shot := browsertest.ElementScreenshot(t, ctx, "svg")
				name := tc.name + ".png"
				if strings.HasSuffix(url, ".svg") {
					name = tc.name + "-standalone.png"
				}
				path := browsertest.KeepArtifact(t, name, shot)
				img, err := png.Decode(bytes.NewReader(shot))
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if b := img.Bounds(); b.Dx() < int(lay.width) || b.Dy() < int(lay.height) {
					t.Errorf("%s: screenshot %dx%d smaller than the picture %sx%s", path, b.Dx(), b.Dy(), num(lay.width), num(lay.height))
				}
				for _, c := range tc.colours {
					if !hasColour(img, c) {
						t.Errorf("%s: no pixel of %s (a state's border) in the screenshot", path, c)
					}
				}
			}
		})
	}
}

// TestPictureOfHostilePathsRunsNoScriptInAPage inlines a picture of
// project paths, details and links made to run a script into an HTML page
// WITHOUT any Content-Security-Policy, so that only the escaping stands in
// the way: no payload runs, the HTML parser reads every path back as it
// was, and the only links are the http(s) ones.
func TestPictureOfHostilePathsRunsNoScriptInAPage(t *testing.T) {
	payloads := []string{
		`g/<script>window.__pwned=1</script>`,
		`g/<img src=x onerror="window.__pwned=2">`,
		`g/"><svg onload="window.__pwned=3">`,
		`g/' onmouseover='window.__pwned=4`,
		`g/</title></svg><script>window.__pwned=5</script>`,
		`g/<![CDATA[</svg><script>window.__pwned=6</script>]]>`,
		`g/<foreignObject><iframe srcdoc="<script>parent.__pwned=7</script>"></iframe></foreignObject>`,
		`g/&lt;script&gt;window.__pwned=8&lt;/script&gt;`,
	}
	d := &Diagram{Title: `</title><script>window.__pwned=9</script>`}
	for i, id := range payloads {
		d.Nodes = append(d.Nodes, Node{ID: id, State: StateFailed, Detail: payloads[(i+1)%len(payloads)],
			Link: []string{"javascript:window.__pwned=10", "data:text/html,<script>parent.__pwned=11</script>",
				"https://gitlab.example.com/g/p/-/pipelines/1?x=\"><script>window.__pwned=12</script>"}[i%3]})
		if i > 0 {
			d.Edges = append(d.Edges, Edge{From: payloads[i-1], To: id})
		}
	}
	lay, err := Arrange(d)
	if err != nil {
		t.Fatal(err)
	}
	var inline bytes.Buffer
	if err := lay.WriteSVG(&inline, Options{Inline: true}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><html><body>\n"+inline.String()+"</body></html>\n")
	}))
	defer srv.Close()
	ctx := browsertest.New(t, 1280, 900)
	browsertest.Do(t, ctx, "opening the page", chromedp.Navigate(srv.URL))
	// Hovering every box would fire an onmouseover that got through.
	pwned := browsertest.Value(t, ctx, "checking for payloads", chromedp.Evaluate[string](
		`(() => { document.querySelectorAll('*').forEach(e => e.dispatchEvent(new MouseEvent('mouseover')));
		          return String(window.__pwned); })()`))
	if pwned != "undefined" {
		t.Errorf("payload %s ran", pwned)
	}
	ids := browsertest.Value(t, ctx, "reading the boxes", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('svg g.node')).map(g => g.getAttribute('data-id'))`))
	if strings.Join(ids, "\n") != strings.Join(payloads, "\n") {
		t.Errorf("paths read back by the HTML parser:\n%q\nwant\n%q", ids, payloads)
	}
	hrefs := browsertest.Value(t, ctx, "reading the links", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))`))
	for _, h := range hrefs {
		if !strings.HasPrefix(h, "https://gitlab.example.com/") {
			t.Errorf("link %q", h)
		}
	}
	if len(hrefs) != 2 {
		t.Errorf("%d links, want 2 (the https ones)", len(hrefs))
	}
	if n := browsertest.Value(t, ctx, "counting foreign elements", chromedp.Evaluate[int](
		`document.querySelectorAll('script, iframe, img, foreignObject').length`)); n != 0 {
		t.Errorf("%d script, iframe, img or foreignObject elements in the page", n)
	}
	browsertest.KeepArtifact(t, "hostile-paths.png", browsertest.ElementScreenshot(t, ctx, "svg"))
}

// TestCSPWatcherSeesAnInlineStyle is the control of the test above: a
// style attribute, which a strict policy blocks, is reported.
func TestCSPWatcherSeesAnInlineStyle(t *testing.T) {
	ctx := browsertest.New(t, 800, 600)
	browsertest.WatchCSP(t, ctx)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" style="fill:red"/></svg>`)
	}))
	defer srv.Close()
	browsertest.Do(t, ctx, "opening the page", chromedp.Navigate(srv.URL))
	if v := browsertest.CSPViolations(t, ctx); len(v) == 0 {
		t.Fatal("a blocked style attribute was not reported: the CSP check of the pictures proves nothing")
	}
}

// hasColour reports whether some pixel of img is the colour hex (#rrggbb),
// allowing for anti-aliasing.
func hasColour(img image.Image, hex string) bool {
	var want color.RGBA
	fmt.Sscanf(hex, "#%02x%02x%02x", &want.R, &want.G, &want.B)
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, want.R) && near(g>>8, want.G) && near(bl>>8, want.B) {
				return true
			}
		}
	}
	return false
}

func near(got uint32, want uint8) bool {
	d := int(got) - int(want)
	return d >= -3 && d <= 3
}

// BenchmarkChromiumRenders1000 measures the time from asking Chromium for
// the 1,000-project picture (standalone SVG over loopback) to its load
// event and the layout of the drawing.
func BenchmarkChromiumRenders1000(b *testing.B) {
	d := chainGraph(1000, 7)
	var svg bytes.Buffer
	if err := WriteSVG(&svg, d, Options{}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(svg.Bytes())
	}))
	defer srv.Close()
	ctx := browsertest.New(b, 1280, 900)
	for b.Loop() {
		browsertest.Do(b, ctx, "opening the picture", chromedp.Navigate(srv.URL+"/picture.svg"))
		if n := browsertest.Value(b, ctx, "counting boxes", chromedp.Evaluate[int](
			`document.querySelectorAll('g.node').length + 0*document.documentElement.getBoundingClientRect().width`)); n != 1000 {
			b.Fatalf("%d boxes", n)
		}
	}
	b.ReportMetric(float64(svg.Len()), "svg-bytes")
}
