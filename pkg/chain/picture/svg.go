package picture

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Measures of the drawing, in SVG user units (CSS pixels at 100 %).
// Project paths are set in a monospace font so that their width is known
// without measuring text: 12px DejaVu Sans Mono advances 7.22px a glyph.
const (
	margin      = 16.0
	charWidth   = 7.25
	boxPadding  = 8.0
	minBoxPlain = 96.0
	// A box with a state must hold its longest word, "stopped: upstream
	// failed", at 10.5px sans-serif.
	minBoxState = 168.0
	// Paths longer than this many characters are shortened; the full path
	// is the tooltip.
	maxLabelChars  = 32
	boxHeightPlain = 26.0
	boxHeightState = 38.0
	// columnGap leaves the edges room to bend between two layers; more
	// edges between them get more room, up to a limit.
	columnGap    = 84.0
	maxExtraGap  = 72.0
	headerHeight = 84.0
	legendHeight = 22.0
	// The first line is cut after maxTitleChars, bold 15px sans-serif:
	// about 9px a character.
	maxTitleChars  = 100
	titleCharWidth = 9.0

	monoFont = "DejaVu Sans Mono, Menlo, Consolas, monospace"
	sansFont = "DejaVu Sans, Helvetica, Arial, sans-serif"
)

// look is how a state is drawn: colours from the Okabe–Ito palette, which
// people with the common colour-vision deficiencies tell apart, and always
// a word (and for some, a dashed border) as well.
type look struct {
	fill, stroke string
	width        float64
	dash         string
	word         string
}

var looks = map[State]look{
	StateNone:     {fill: "#f4f6f9", stroke: "#4b5563", width: 1.2},
	StateWaiting:  {fill: "#ffffff", stroke: "#8c96a5", width: 1.2, dash: "4 3", word: "waiting"},
	StateQueued:   {fill: "#e6f0fa", stroke: "#0072b2", width: 1.2, dash: "4 3", word: "queued"},
	StateCreated:  {fill: "#e6f0fa", stroke: "#0072b2", width: 1.5, word: "created"},
	StateRunning:  {fill: "#bcdcf3", stroke: "#0072b2", width: 2.5, word: "running"},
	StateSuccess:  {fill: "#cdeee0", stroke: "#009e73", width: 1.5, word: "success"},
	StateFailed:   {fill: "#f9d5bf", stroke: "#d55e00", width: 3, word: "failed"},
	StateCanceled: {fill: "#e3e5e8", stroke: "#3b4350", width: 1.5, dash: "2 2", word: "canceled"},
	StateStopped:  {fill: "#fcefc9", stroke: "#e69f00", width: 2, dash: "6 3", word: "stopped: upstream failed"},
}

const (
	edgeColour  = "#7f8a9c"
	cycleColour = "#d55e00"
	cycleDash   = "6 4"
)

// Layout is a diagram arranged for drawing: layers, order and positions
// are computed once, and WriteSVG draws it.
type Layout struct {
	l         *layered
	stateful  bool
	inCycle   []bool // per node
	colX      []float64
	colW      []float64
	labelMax  []int // characters of a path shown in each column
	width     float64
	height    float64
	graphTop  float64
	anyCycles bool
}

// Arrange lays d out. It fails only for a diagram that does not hold
// together (an *inputerr.Error naming the field): a repeated node ID, an
// edge or layer naming an unknown node, a node in no layer or in two.
func Arrange(d *Diagram) (*Layout, error) {
	ids, err := d.index()
	if err != nil {
		return nil, err
	}
	l := newLayered(d, ids)
	l.reduceCrossings()
	lay := &Layout{l: l, inCycle: make([]bool, len(d.Nodes))}
	for _, n := range d.Nodes {
		if n.State != StateNone {
			lay.stateful = true
		}
	}
	for _, r := range l.routes {
		if r.cycle {
			lay.inCycle[r.from], lay.inCycle[r.to] = true, true
			lay.anyCycles = true
		}
	}
	// Without states or cycles there is no legend, and its line is left out.
	lay.graphTop = headerHeight
	if !lay.stateful && !lay.anyCycles {
		lay.graphTop = headerHeight - legendHeight
	}
	boxHeight, minBox := boxHeightPlain, minBoxPlain
	if lay.stateful {
		boxHeight, minBox = boxHeightState, minBoxState
	}
	l.place(boxHeight)
	lay.columns(minBox)
	return lay, nil
}

// columns sets the x of each layer: as wide as its longest path (up to
// maxLabelChars), and further from the next layer when many edges pass.
func (lay *Layout) columns(minBox float64) {
	l := lay.l
	n := len(l.layers)
	lay.colX = make([]float64, n)
	lay.colW = make([]float64, n)
	lay.labelMax = make([]int, n)
	x := margin + 8
	bottom := 0.0
	for i, order := range l.layers {
		chars := 0
		for _, v := range order {
			vx := &l.vertices[v]
			if vx.node >= 0 {
				chars = max(chars, textWidth(l.d.Nodes[vx.node].ID))
			}
			bottom = max(bottom, vx.y+vx.h/2)
		}
		chars = min(chars, maxLabelChars)
		lay.labelMax[i] = max(chars, int((minBox-2*boxPadding)/charWidth))
		lay.colW[i] = max(minBox, float64(chars)*charWidth+2*boxPadding)
		lay.colX[i] = x
		gap := columnGap
		if i+1 < n {
			segments := 0
			for _, v := range order {
				segments += len(l.vertices[v].down)
			}
			gap += min(maxExtraGap, float64(segments)/2)
		}
		x += lay.colW[i] + gap
	}
	lay.width = x - columnGap + margin + 8
	for _, r := range l.routes {
		if r.flat {
			lay.width += 48 // room for the arcs right of the last column
			break
		}
	}
	// Wide enough for the title and the legend.
	_, legendWidth := lay.legend()
	lay.width = max(lay.width, 520, 2*margin+legendWidth,
		2*margin+titleCharWidth*float64(textWidth(shownTitle(lay.l.d.Title))))
	lay.height = lay.graphTop + bottom + margin + 8
	if n == 0 {
		lay.height = lay.graphTop + 40
	}
}

// shownTitle is the title as the picture's first line shows it: at most
// maxTitleChars characters (the <title> element holds all of it).
func shownTitle(title string) string {
	if title == "" {
		return "chain"
	}
	if runes := []rune(title); len(runes) > maxTitleChars {
		return string(runes[:maxTitleChars-1]) + "…"
	}
	return title
}

// Crossings is the number of edge crossings between adjacent layers of the
// drawing (long edges counted through their dummies).
func (lay *Layout) Crossings() int { return lay.l.crossings() }

// Options says how the SVG is written.
type Options struct {
	// Inline leaves out the XML declaration, for an <svg> inside an HTML
	// page. The element is the same otherwise.
	Inline bool
}

// WriteSVG lays d out and draws it on w.
func WriteSVG(w io.Writer, d *Diagram, o Options) error {
	lay, err := Arrange(d)
	if err != nil {
		return err
	}
	return lay.WriteSVG(w, o)
}

// WriteSVG draws the layout on w: a standalone SVG document, or with
// o.Inline an svg element for an HTML page.
func (lay *Layout) WriteSVG(w io.Writer, o Options) error {
	var b strings.Builder
	d := lay.l.d
	title := d.Title
	if title == "" {
		title = shownTitle(title)
	}
	if !o.Inline {
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" role="img" font-family="%s">`+"\n",
		num(lay.width), num(lay.height), num(lay.width), num(lay.height), sansFont)
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(title))
	fmt.Fprintf(&b, `<rect width="%s" height="%s" fill="#ffffff"/>`+"\n", num(lay.width), num(lay.height))
	fmt.Fprintf(&b, `<text x="%s" y="26" font-size="15" font-weight="bold" fill="#111827">%s</text>`+"\n", num(margin), esc(shownTitle(title)))
	lay.writeLegend(&b)
	if len(d.Nodes) == 0 {
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="13" fill="#4b5563">no projects</text>`+"\n", num(margin), num(lay.graphTop+16))
	}
	lay.writeColumns(&b)
	lay.writeEdges(&b)
	lay.writeNodes(&b)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// legendEntry is one state the legend names.
type legendEntry struct {
	look  look
	label string
}

// legend lists the states shown, with how many projects are in each, and
// returns the width the legend takes (the cycle mark included).
func (lay *Layout) legend() ([]legendEntry, float64) {
	count := map[State]int{}
	for _, n := range lay.l.d.Nodes {
		count[n.State]++
	}
	var entries []legendEntry
	width := 0.0
	for _, s := range states {
		if count[s] == 0 {
			continue
		}
		e := legendEntry{looks[s], fmt.Sprintf("%s %d", looks[s].word, count[s])}
		entries = append(entries, e)
		width += legendSpace(e.label)
	}
	if lay.anyCycles {
		width += 28 + legendSpace("dependency cycle")
	}
	return entries, width
}

// legendSpace is the room a legend label takes with its swatch, at 11.5px
// sans-serif (about 7px a character).
func legendSpace(label string) float64 { return 24 + float64(len(label))*7 + 18 }

// writeLegend names the states shown, with how many projects are in each,
// and the mark of a cycle: the colours never speak alone.
func (lay *Layout) writeLegend(b *strings.Builder) {
	entries, _ := lay.legend()
	x := margin
	const y = 50.0
	b.WriteString(`<g font-size="11.5" fill="#1f2937">` + "\n")
	for _, e := range entries {
		fmt.Fprintf(b, `<rect x="%s" y="%s" width="18" height="12" rx="2" fill="%s" stroke="%s" stroke-width="%s"%s/>`,
			num(x), num(y-10), e.look.fill, e.look.stroke, num(min(e.look.width, 2)), dashAttr(e.look.dash))
		fmt.Fprintf(b, `<text x="%s" y="%s">%s</text>`+"\n", num(x+24), num(y), esc(e.label))
		x += legendSpace(e.label)
	}
	if lay.anyCycles {
		fmt.Fprintf(b, `<path d="M%s %sh22" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`,
			num(x), num(y-4), cycleColour, cycleDash)
		fmt.Fprintf(b, `<text x="%s" y="%s">dependency cycle</text>`+"\n", num(x+28), num(y))
	}
	b.WriteString("</g>\n")
}

// writeColumns shades each layer's column and names its wave.
func (lay *Layout) writeColumns(b *strings.Builder) {
	b.WriteString(`<g class="waves">` + "\n")
	for i := range lay.l.layers {
		fmt.Fprintf(b, `<rect x="%s" y="%s" width="%s" height="%s" rx="6" fill="#f1f4f8"/>`,
			num(lay.colX[i]-8), num(lay.graphTop-20), num(lay.colW[i]+16), num(lay.height-lay.graphTop+20-margin))
		fmt.Fprintf(b, `<text x="%s" y="%s" font-size="11" fill="#4b5563" text-anchor="middle">wave %d</text>`+"\n",
			num(lay.colX[i]+lay.colW[i]/2), num(lay.graphTop-6), i+1)
	}
	b.WriteString("</g>\n")
}

// point is a place in the drawing.
type point struct{ x, y float64 }

// ports spreads the edges that meet a box over its side, in the order of
// their other ends, so that they do not all meet in one point and do not
// cross at the box.
func (lay *Layout) ports() (left, right map[[2]int]float64) {
	l := lay.l
	type end struct {
		route  int
		otherY float64
	}
	leftEnds := map[int][]end{}
	rightEnds := map[int][]end{}
	for ri, r := range l.routes {
		if r.flat {
			continue
		}
		first, last := r.chain[0], r.chain[len(r.chain)-1]
		rightEnds[first] = append(rightEnds[first], end{ri, l.vertices[r.chain[1]].y})
		leftEnds[last] = append(leftEnds[last], end{ri, l.vertices[r.chain[len(r.chain)-2]].y})
	}
	spread := func(ends map[int][]end) map[[2]int]float64 {
		out := map[[2]int]float64{}
		for v, es := range ends {
			slices.SortStableFunc(es, func(a, b end) int {
				switch {
				case a.otherY < b.otherY:
					return -1
				case a.otherY > b.otherY:
					return 1
				}
				return a.route - b.route
			})
			vx := &l.vertices[v]
			for k, e := range es {
				y := vx.y
				if len(es) > 1 {
					y = vx.y - 0.3*vx.h + 0.6*vx.h*float64(k)/float64(len(es)-1)
				}
				out[[2]int{v, e.route}] = y
			}
		}
		return out
	}
	return spread(leftEnds), spread(rightEnds)
}

func (lay *Layout) writeEdges(b *strings.Builder) {
	l := lay.l
	left, right := lay.ports()
	x := func(v int) (float64, float64) {
		c := l.vertices[v].layer
		return lay.colX[c], lay.colX[c] + lay.colW[c]
	}
	top := lay.graphTop
	b.WriteString(`<g class="edges" fill="none">` + "\n")
	// Cycle edges last, on top of the others.
	for _, cyclePass := range []bool{false, true} {
		for ri, r := range l.routes {
			if r.cycle != cyclePass {
				continue
			}
			colour, width, dash := edgeColour, "1.3", ""
			if r.cycle {
				colour, width, dash = cycleColour, "2", dashAttr(cycleDash)
			}
			var d strings.Builder
			var tip point
			var pointsLeft bool
			if r.flat {
				a, c := r.chain[0], r.chain[1]
				_, xr := x(a)
				ya, yc := top+l.vertices[a].y, top+l.vertices[c].y
				bulge := 22 + min(60, abs(ya-yc)/4)
				if a == c {
					ya, yc = ya-6, ya+6
				}
				fmt.Fprintf(&d, "M%s %sC%s %s %s %s %s %s", num(xr), num(ya), num(xr+bulge), num(ya),
					num(xr+bulge), num(yc), num(xr+6), num(yc))
				tip, pointsLeft = point{xr, yc}, true
			} else {
				first := r.chain[0]
				_, xr := x(first)
				prev := point{xr, top + right[[2]int{first, ri}]}
				start := prev
				fmt.Fprintf(&d, "M%s %s", num(prev.x), num(prev.y))
				for k := 1; k < len(r.chain); k++ {
					v := r.chain[k]
					xl, xr := x(v)
					y := top + l.vertices[v].y
					if k == len(r.chain)-1 {
						y = top + left[[2]int{v, ri}]
					}
					if abs(y-prev.y) < 0.05 {
						// Straight on: a long edge whose dummies line up.
						fmt.Fprintf(&d, "H%s", num(xl))
					} else {
						mid := (xl - prev.x) / 2
						fmt.Fprintf(&d, "C%s %s %s %s %s %s", num(prev.x+mid), num(prev.y), num(xl-mid), num(y), num(xl), num(y))
					}
					prev = point{xl, y}
					if l.vertices[v].node < 0 {
						fmt.Fprintf(&d, "H%s", num(xr))
						prev = point{xr, y}
					}
				}
				tip = prev
				if r.reversed {
					tip, pointsLeft = start, true
				}
			}
			fmt.Fprintf(b, `<path d="%s" stroke="%s" stroke-width="%s"%s/>`, d.String(), colour, width, dash)
			fmt.Fprintf(b, `<path d="%s" fill="%s"/>`+"\n", arrowHead(tip, pointsLeft), colour)
		}
	}
	b.WriteString("</g>\n")
}

// arrowHead is a filled triangle with its tip at p, pointing right (or
// left).
func arrowHead(p point, pointsLeft bool) string {
	back := -8.0
	if pointsLeft {
		back = 8
	}
	return fmt.Sprintf("M%s %sL%s %sL%s %sZ", num(p.x), num(p.y), num(p.x+back), num(p.y-4), num(p.x+back), num(p.y+4))
}

func (lay *Layout) writeNodes(b *strings.Builder) {
	l := lay.l
	d := l.d
	b.WriteString(`<g class="nodes">` + "\n")
	for _, order := range l.layers {
		for _, v := range order {
			vx := &l.vertices[v]
			if vx.node < 0 {
				continue
			}
			n := &d.Nodes[vx.node]
			lk := looks[n.State]
			stroke, width, dash := lk.stroke, lk.width, lk.dash
			if lay.inCycle[vx.node] && n.State == StateNone {
				stroke, width, dash = cycleColour, 2.5, cycleDash
			}
			x, y := lay.colX[vx.layer], lay.graphTop+vx.y-vx.h/2
			w := lay.colW[vx.layer]
			tooltip := n.ID
			if lk.word != "" {
				tooltip += "\n" + lk.word
			}
			if lay.inCycle[vx.node] {
				tooltip += "\nin a dependency cycle"
			}
			if n.Detail != "" {
				tooltip += "\n" + n.Detail
			}
			fmt.Fprintf(b, `<g class="node" data-id="%s" data-state="%s">`, esc(n.ID), esc(string(n.State)))
			fmt.Fprintf(b, "<title>%s</title>", esc(tooltip))
			link := safeLink(n.Link)
			if link != "" {
				fmt.Fprintf(b, `<a href="%s">`, esc(link))
			}
			fmt.Fprintf(b, `<rect x="%s" y="%s" width="%s" height="%s" rx="5" fill="%s" stroke="%s" stroke-width="%s"%s/>`,
				num(x), num(y), num(w), num(vx.h), lk.fill, stroke, num(width), dashAttr(dash))
			underline := ""
			if link != "" {
				underline = ` text-decoration="underline"`
			}
			labelY := y + vx.h/2 + 4
			if lay.stateful {
				labelY = y + 16
			}
			fmt.Fprintf(b, `<text x="%s" y="%s" font-family="%s" font-size="12" fill="#111827"%s>%s</text>`,
				num(x+boxPadding), num(labelY), monoFont, underline, esc(shorten(n.ID, lay.labelMax[vx.layer])))
			if lay.stateful && lk.word != "" {
				fmt.Fprintf(b, `<text x="%s" y="%s" font-size="10.5" fill="#374151">%s</text>`,
					num(x+boxPadding), num(y+31), esc(lk.word))
			}
			if link != "" {
				b.WriteString("</a>")
			}
			b.WriteString("</g>\n")
		}
	}
	b.WriteString("</g>\n")
}

// safeLink returns link when it is an absolute http or https URL with a
// host, and "" otherwise: a javascript:, data: or relative URL taken from a
// webhook must never become a link.
func safeLink(link string) string {
	if link == "" || strings.ContainsFunc(link, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return ""
	}
	u, err := url.Parse(link)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return ""
	}
	return u.String()
}

// shorten fits path into max characters: the last whole segments after
// "…/" (the project's own name matters most, its group is shared by its
// neighbours), or, when the last segment alone is too long, its start and
// end around "…".
func shorten(path string, max int) string {
	if textWidth(path) <= max {
		return path
	}
	const ellipsis = "…"
	segments := strings.Split(path, "/")
	tail := ""
	for i := len(segments) - 1; i >= 0; i-- {
		candidate := segments[i]
		if tail != "" {
			candidate += "/" + tail
		}
		if textWidth(candidate)+2 > max {
			break
		}
		tail = candidate
	}
	if tail != "" {
		return ellipsis + "/" + tail
	}
	last := []rune(segments[len(segments)-1])
	room := max - 3 // "…/" and the middle "…"
	if room < 2 {
		return ellipsis
	}
	head, end := fitRunes(last, (room+1)/2, false), fitRunes(last, room/2, true)
	return ellipsis + "/" + head + ellipsis + end
}

// fitRunes takes runes from the start (or the end) of s up to width
// columns.
func fitRunes(s []rune, width int, fromEnd bool) string {
	used, n := 0, 0
	for n < len(s) {
		r := s[n]
		if fromEnd {
			r = s[len(s)-1-n]
		}
		if used+runeWidth(r) > width {
			break
		}
		used += runeWidth(r)
		n++
	}
	if fromEnd {
		return string(s[len(s)-n:])
	}
	return string(s[:n])
}

// textWidth counts the columns s takes in a monospace font: East Asian
// wide characters take two. Invalid UTF-8 counts one a byte, as it is drawn
// as one replacement character each.
func textWidth(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

func runeWidth(r rune) int {
	if r >= 0x1100 && (r <= 0x115f || (r >= 0x2e80 && r <= 0xa4cf) || (r >= 0xac00 && r <= 0xd7a3) ||
		(r >= 0xf900 && r <= 0xfaff) || (r >= 0xfe30 && r <= 0xfe4f) || (r >= 0xff00 && r <= 0xff60) ||
		(r >= 0xffe0 && r <= 0xffe6) || (r >= 0x1f300 && r <= 0x1faff) || (r >= 0x20000 && r <= 0x3fffd)) {
		return 2
	}
	return 1
}

// esc escapes s for XML text and attribute values alike (quotes too), and
// replaces what XML cannot hold at all (NUL, most control characters,
// invalid UTF-8) with U+FFFD.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

func dashAttr(dash string) string {
	if dash == "" {
		return ""
	}
	return ` stroke-dasharray="` + dash + `"`
}

// num writes a coordinate with one decimal at most: the output is the same
// on every machine and run.
func num(f float64) string {
	return strconv.FormatFloat(float64(int64(f*10+copysignHalf(f)))/10, 'f', -1, 64)
}

func copysignHalf(f float64) float64 {
	if f < 0 {
		return -0.5
	}
	return 0.5
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
