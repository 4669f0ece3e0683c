package chain

import (
	"fmt"
	"io"
	"strings"

	"github.com/opsctl/opsctl/pkg/chain/picture"
)

// Diagram is the scanned graph as a picture: its columns are the waves a
// plan of every project would have, its cycles are drawn and marked, and
// each box's tooltip says where the project's upstreams come from and
// which external images it builds on.
func (g *Graph) Diagram() *picture.Diagram {
	d := &picture.Diagram{Title: fmt.Sprintf("chain graph: %s", count(len(g.Projects), "project"))}
	if len(g.Cycles) > 0 {
		d.Title += ", " + count(len(g.Cycles), "cycle")
	}
	for _, p := range g.Projects {
		d.Nodes = append(d.Nodes, picture.Node{ID: p.Path, Detail: projectDetail(p)})
		for _, up := range p.Upstreams {
			if g.index[up] != nil {
				d.Edges = append(d.Edges, picture.Edge{From: up, To: p.Path})
			}
		}
	}
	return d
}

// PlanDiagram is plan as a picture: one column per wave, and the edges of
// g between projects of the plan.
func (g *Graph) PlanDiagram(plan *Plan) *picture.Diagram {
	d := &picture.Diagram{
		Title:  fmt.Sprintf("chain plan: %s in %s", count(plan.Size(), "project"), count(len(plan.Waves), "wave")),
		Layers: plan.Waves,
	}
	inPlan := make(map[string]bool, plan.Size())
	for _, wave := range plan.Waves {
		for _, path := range wave {
			inPlan[path] = true
		}
	}
	for _, wave := range plan.Waves {
		for _, path := range wave {
			node := picture.Node{ID: path}
			if p := g.index[path]; p != nil {
				node.Detail = projectDetail(p)
				for _, up := range p.Upstreams {
					if inPlan[up] {
						d.Edges = append(d.Edges, picture.Edge{From: up, To: path})
					}
				}
			}
			d.Nodes = append(d.Nodes, node)
		}
	}
	return d
}

// Diagram is the run as a picture: its frozen plan, each project with its
// state. A waiting project below a failed or canceled one (directly or
// not) is drawn as stopped: it will not build unless that one is fixed.
// Nodes carry no link yet; the caller that knows a step's pipeline page
// sets Node.Link.
func (r *Run) Diagram() *picture.Diagram {
	d := &picture.Diagram{Title: fmt.Sprintf("chain run %s: %s", r.ID, r.Status), Layers: r.Waves}
	state := make(map[string]picture.State, len(r.Steps))
	for _, wave := range r.Waves {
		for _, path := range wave {
			state[path] = stepPicture(r.Steps[path])
		}
	}
	// Waves run upstream first, so an upstream's state is final here
	// before its downstreams are looked at.
	for _, wave := range r.Waves {
		for _, path := range wave {
			if state[path] != picture.StateWaiting {
				continue
			}
			for _, up := range r.Upstreams[path] {
				switch state[up] {
				case picture.StateFailed, picture.StateCanceled, picture.StateStopped:
					state[path] = picture.StateStopped
				}
			}
		}
	}
	for _, wave := range r.Waves {
		for _, path := range wave {
			node := picture.Node{ID: path, State: state[path]}
			if s := r.Steps[path]; s != nil {
				var detail []string
				if s.PipelineID > 0 {
					detail = append(detail, fmt.Sprintf("pipeline %d", s.PipelineID))
				}
				if s.Reason != "" {
					detail = append(detail, s.Reason)
				}
				node.Detail = strings.Join(detail, "\n")
			}
			d.Nodes = append(d.Nodes, node)
			for _, up := range r.Upstreams[path] {
				if _, ok := state[up]; ok {
					d.Edges = append(d.Edges, picture.Edge{From: up, To: path})
				}
			}
		}
	}
	return d
}

// stepPicture is the picture's state of a step; a step the run does not
// hold (yet) is waiting.
func stepPicture(s *Step) picture.State {
	if s == nil {
		return picture.StateWaiting
	}
	switch s.State {
	case StepQueued:
		return picture.StateQueued
	case StepTriggered:
		return picture.StateCreated
	case StepRunning:
		return picture.StateRunning
	case StepSucceeded:
		return picture.StateSuccess
	case StepFailed:
		return picture.StateFailed
	case StepCanceled:
		return picture.StateCanceled
	default:
		return picture.StateWaiting
	}
}

// WriteSVG draws the graph as a standalone SVG document (`chain scan -o
// svg`).
func (g *Graph) WriteSVG(w io.Writer) error {
	return picture.WriteSVG(w, g.Diagram(), picture.Options{})
}

// WriteSVG draws the plan's waves, with the edges of g between its
// projects, as a standalone SVG document (`chain plan -o svg`).
func (p *Plan) WriteSVG(w io.Writer, g *Graph) error {
	return picture.WriteSVG(w, g.PlanDiagram(p), picture.Options{})
}

func projectDetail(p *Project) string {
	lines := []string{"upstreams from: " + p.Source}
	for _, e := range p.External {
		lines = append(lines, "external: "+e)
	}
	return strings.Join(lines, "\n")
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
