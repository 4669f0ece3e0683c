// Package picture draws a chain of projects as a layered graph in SVG: one
// column per wave, left to right, one box per project, and an arrow from
// each upstream to the projects that build on it.
//
// The layout is the package's own (no Graphviz, no cgo): a small
// Sugiyama-style layered drawing. Layers are the plan's waves, or for a
// scanned graph the longest path from a project without upstreams (which
// gives the same waves); an edge that spans several layers gets a dummy
// vertex in each layer between, so that it runs through a gap of its own
// between the boxes instead of across them; the order within each layer is
// improved by barycenter and median sweeps with adjacent transpositions,
// keeping the order with the fewest crossings; the vertical positions are
// an order-preserving least-squares fit that pulls each box towards its
// neighbours, which straightens the long edges.
//
// The same drawing serves the standalone file of `chain scan|plan -o svg`
// and the inline picture of a run page. It holds no script, no style
// element and no style attribute (colours are presentation attributes), so
// it can be inlined under a strict Content-Security-Policy. Everything taken
// from a Diagram is escaped for XML, and only http and https URLs become
// links.
package picture

import (
	"fmt"
	"strconv"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// State is where a project of a chain run stands, as the picture shows it:
// a colour and a word, so that it reads without telling colours apart.
type State string

const (
	// StateNone draws a plain box: a scanned graph or a plan has no state.
	StateNone State = ""
	// StateWaiting: upstreams of the run not all built yet.
	StateWaiting State = "waiting"
	// StateQueued: the pipeline is about to be created.
	StateQueued State = "queued"
	// StateCreated: the pipeline was created and has not started.
	StateCreated State = "created"
	// StateRunning: GitLab reported the pipeline pending or running.
	StateRunning State = "running"
	// StateSuccess: the pipeline succeeded.
	StateSuccess State = "success"
	// StateFailed: the pipeline failed.
	StateFailed State = "failed"
	// StateCanceled: the pipeline was canceled.
	StateCanceled State = "canceled"
	// StateStopped: the project waits for an upstream that failed or was
	// canceled, so it will not build unless that upstream is fixed.
	StateStopped State = "stopped"
)

// states lists the states in the order the legend shows them.
var states = []State{StateSuccess, StateRunning, StateCreated, StateQueued, StateWaiting,
	StateFailed, StateCanceled, StateStopped}

// Node is one project of a diagram.
type Node struct {
	// ID is the project's full path: unique in the diagram, shown in the
	// box (shortened with an ellipsis when long) and in full as its
	// tooltip.
	ID string
	// State is drawn as the box's colour and a word under the path.
	State State
	// Link is where a click on the box leads (the project's GitLab
	// pipeline page). Only an absolute http or https URL becomes a link;
	// anything else is left out.
	Link string
	// Detail is more text for the tooltip (why a step failed, the
	// pipeline id), one or more lines.
	Detail string
}

// Edge runs from an upstream project to a project that builds on it.
type Edge struct {
	From string // the upstream's ID
	To   string // the downstream's ID
}

// Diagram is what to draw.
type Diagram struct {
	// Title is the first line of the picture and its accessible name.
	Title string
	Nodes []Node
	// Edges may repeat (drawn once) and may form cycles, which are drawn
	// and marked.
	Edges []Edge
	// Layers fixes the columns, left to right: a plan's waves. Each node
	// is in exactly one layer; an edge whose upstream is not in an earlier
	// layer is drawn backwards or as an arc, and marked if it closes a
	// cycle. When Layers is nil, the columns are the longest-path layers of
	// the graph, after the edges closing cycles are turned around.
	Layers [][]string
}

// index checks d and returns the index of each node's ID.
func (d *Diagram) index() (map[string]int, error) {
	ids := make(map[string]int, len(d.Nodes))
	for i, n := range d.Nodes {
		if _, dup := ids[n.ID]; dup {
			return nil, inputerr.New(fmt.Sprintf("Diagram.Nodes[%d].ID", i), strconv.Quote(n.ID),
				"appears twice; expected each node once")
		}
		if !knownState(n.State) {
			return nil, inputerr.New(fmt.Sprintf("Diagram.Nodes[%d].State", i), strconv.Quote(string(n.State)),
				"expected one of the picture's states (waiting, queued, created, running, success, failed, canceled, stopped) or none")
		}
		ids[n.ID] = i
	}
	for i, e := range d.Edges {
		if _, ok := ids[e.From]; !ok {
			return nil, inputerr.New(fmt.Sprintf("Diagram.Edges[%d].From", i), strconv.Quote(e.From), "expected the ID of a node")
		}
		if _, ok := ids[e.To]; !ok {
			return nil, inputerr.New(fmt.Sprintf("Diagram.Edges[%d].To", i), strconv.Quote(e.To), "expected the ID of a node")
		}
	}
	if d.Layers != nil {
		seen := make([]bool, len(d.Nodes))
		for li, layer := range d.Layers {
			for j, id := range layer {
				name := fmt.Sprintf("Diagram.Layers[%d][%d]", li, j)
				i, ok := ids[id]
				if !ok {
					return nil, inputerr.New(name, strconv.Quote(id), "expected the ID of a node")
				}
				if seen[i] {
					return nil, inputerr.New(name, strconv.Quote(id), "is in two places; expected each node in one layer")
				}
				seen[i] = true
			}
		}
		for i, ok := range seen {
			if !ok {
				return nil, inputerr.New(fmt.Sprintf("Diagram.Nodes[%d].ID", i), strconv.Quote(d.Nodes[i].ID),
					"is in no layer; expected every node in Diagram.Layers")
			}
		}
	}
	return ids, nil
}

func knownState(s State) bool {
	if s == StateNone {
		return true
	}
	for _, known := range states {
		if s == known {
			return true
		}
	}
	return false
}
