package chain

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteText writes the graph as a table for people: one project a line
// with its source, upstreams and external images, then the cycles.
func (g *Graph) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECT\tSOURCE\tUPSTREAMS\tEXTERNAL")
	for _, p := range g.Projects {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Path, p.Source, joinOrDash(p.Upstreams), joinOrDash(p.External))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range g.Cycles {
		if _, err := fmt.Fprintf(w, "cycle: %s\n", FormatCycle(c)); err != nil {
			return err
		}
	}
	return nil
}

func joinOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// WriteDot writes the graph in Graphviz's DOT language. Edges run in build
// order, from an upstream to the project that builds on it; external images
// are dashed ellipses; the edges of cycles are red.
func (g *Graph) WriteDot(w io.Writer) error {
	var b strings.Builder
	b.WriteString("digraph chain {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n")
	inCycle := g.cycleEdges()
	externals := map[string]bool{}
	for _, p := range g.Projects {
		fmt.Fprintf(&b, "  %s;\n", dotQuote(p.Path))
		for _, e := range p.External {
			externals[e] = true
		}
	}
	for _, e := range sortedKeys(externals) {
		fmt.Fprintf(&b, "  %s [shape=ellipse, style=dashed, color=gray40, fontcolor=gray40];\n", dotQuote(e))
	}
	for _, p := range g.Projects {
		for _, e := range p.External {
			fmt.Fprintf(&b, "  %s -> %s [style=dashed, color=gray40];\n", dotQuote(e), dotQuote(p.Path))
		}
		for _, up := range p.Upstreams {
			attrs := ""
			if inCycle[[2]string{up, p.Path}] {
				attrs = " [color=red, penwidth=2]"
			}
			fmt.Fprintf(&b, "  %s -> %s%s;\n", dotQuote(up), dotQuote(p.Path), attrs)
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// WriteMermaid writes the graph as a Mermaid flowchart (GitLab renders
// ```mermaid blocks in Markdown).
func (g *Graph) WriteMermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	ids := map[string]string{}
	id := func(name string) string {
		if v, ok := ids[name]; ok {
			return v
		}
		v := "n" + strconv.Itoa(len(ids))
		ids[name] = v
		return v
	}
	externals := map[string]bool{}
	for _, p := range g.Projects {
		fmt.Fprintf(&b, "  %s[%s]\n", id(p.Path), mermaidQuote(p.Path))
		for _, e := range p.External {
			externals[e] = true
		}
	}
	for _, e := range sortedKeys(externals) {
		fmt.Fprintf(&b, "  %s([%s]):::external\n", id(e), mermaidQuote(e))
	}
	inCycle := g.cycleEdges()
	edge := 0
	var red []string
	for _, p := range g.Projects {
		for _, e := range p.External {
			fmt.Fprintf(&b, "  %s -.-> %s\n", id(e), id(p.Path))
			edge++
		}
		for _, up := range p.Upstreams {
			fmt.Fprintf(&b, "  %s --> %s\n", id(up), id(p.Path))
			if inCycle[[2]string{up, p.Path}] {
				red = append(red, strconv.Itoa(edge))
			}
			edge++
		}
	}
	b.WriteString("  classDef external stroke-dasharray: 4 4,color:#666\n")
	if len(red) > 0 {
		fmt.Fprintf(&b, "  linkStyle %s stroke:red,stroke-width:2px\n", strings.Join(red, ","))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mermaidQuote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, "#quot;") + `"`
}

// cycleEdges returns the edges (upstream, downstream) of the named cycles.
func (g *Graph) cycleEdges() map[[2]string]bool {
	edges := map[[2]string]bool{}
	for _, c := range g.Cycles {
		for i := range c {
			edges[[2]string{c[i], c[(i+1)%len(c)]}] = true
		}
	}
	return edges
}

// WriteText writes one wave a line: "1: g/base", "2: g/python g/ruby".
func (p *Plan) WriteText(w io.Writer) error {
	for i, wave := range p.Waves {
		if _, err := fmt.Fprintf(w, "%d: %s\n", i+1, strings.Join(wave, " ")); err != nil {
			return err
		}
	}
	return nil
}
