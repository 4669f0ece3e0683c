package picture

import (
	"fmt"
	"testing"
)

// TestCrossingReductionReachesTheKnownOptimum arranges graphs whose least
// number of crossings is known, given in an order that crosses more: the
// reduction must reach the optimum, and never end above where it started.
func TestCrossingReductionReachesTheKnownOptimum(t *testing.T) {
	for _, tc := range []struct {
		name    string
		d       *Diagram
		optimum int
	}{
		// Two layers of four, joined first to last: every pair crosses (6);
		// turned around, none.
		{"twisted", &Diagram{
			Nodes:  nodes("a", "b", "c", "d", "w", "x", "y", "z"),
			Edges:  []Edge{{"a", "z"}, {"b", "y"}, {"c", "x"}, {"d", "w"}},
			Layers: [][]string{{"a", "b", "c", "d"}, {"w", "x", "y", "z"}},
		}, 0},
		{"plan7", plan7(), 0},
		{"run-every-state", runEveryState(), 0},
		// A tree drawn from its root has a drawing without crossings; its
		// paths are in an order that scatters the children of each parent.
		{"tree", tree(3, 4), 0},
		// An edge spanning two layers passes through the middle one as a
		// dummy, which must find its place between the boxes there.
		{"long-edge", &Diagram{
			Nodes: nodes("a", "b", "m1", "m2", "m3", "z"),
			Edges: []Edge{{"a", "m1"}, {"a", "m2"}, {"b", "m3"}, {"m3", "z"}, {"a", "z"}, {"m1", "z"}},
		}, 0},
		// K(3,3): every order has 3·3 = 9 crossings.
		{"k33", &Diagram{
			Nodes: nodes("a", "b", "c", "x", "y", "z"),
			Edges: []Edge{{"a", "x"}, {"a", "y"}, {"a", "z"}, {"b", "x"}, {"b", "y"}, {"b", "z"},
				{"c", "x"}, {"c", "y"}, {"c", "z"}},
		}, 9},
		// K(2,2) has one crossing in any order, and an extra pair of edges
		// given crossed adds one that can be removed.
		{"k22-and-twist", &Diagram{
			Nodes:  nodes("a", "b", "p", "q", "x", "y", "r", "s"),
			Edges:  []Edge{{"a", "x"}, {"a", "y"}, {"b", "x"}, {"b", "y"}, {"p", "s"}, {"q", "r"}},
			Layers: [][]string{{"a", "p", "b", "q"}, {"x", "r", "y", "s"}},
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lay, err := Arrange(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			before, after := lay.l.initialCrossings, lay.Crossings()
			t.Logf("crossings: %d in the given order, %d after reduction (optimum %d)", before, after, tc.optimum)
			if after != tc.optimum {
				t.Errorf("%d crossings after reduction, want the optimum %d", after, tc.optimum)
			}
			if after > before {
				t.Errorf("reduction made it worse: %d -> %d", before, after)
			}
			if tc.optimum < before && after >= before {
				t.Errorf("no crossing removed (%d), though %d is possible", before, tc.optimum)
			}
		})
	}
}

// TestCrossingReductionOnLargeGraphs checks, on the 120- and
// 1,000-project graphs, that the reduction removes most crossings of the
// scan's order.
func TestCrossingReductionOnLargeGraphs(t *testing.T) {
	for _, n := range []int{120, 1000} {
		lay, err := Arrange(chainGraph(n, 7))
		if err != nil {
			t.Fatal(err)
		}
		before, after := lay.l.initialCrossings, lay.Crossings()
		t.Logf("%d projects, %d vertices with dummies: crossings %d in the scan's order, %d after reduction",
			n, len(lay.l.vertices), before, after)
		if after*2 > before {
			t.Errorf("%d projects: %d crossings left of %d: less than half removed", n, after, before)
		}
	}
}

// TestBoxesAndLongEdgesNeverOverlap checks the placement: in every column
// the boxes and the dummies of long edges keep their order and their
// distance, so an edge passing through a column never runs across a box.
func TestBoxesAndLongEdgesNeverOverlap(t *testing.T) {
	for name, d := range map[string]*Diagram{"graph120": chainGraph(120, 7), "graph1000": chainGraph(1000, 3),
		"plan7": plan7(), "cycles": cycles()} {
		lay, err := Arrange(d)
		if err != nil {
			t.Fatal(err)
		}
		l := lay.l
		dummies := 0
		for lay, order := range l.layers {
			for i := 1; i < len(order); i++ {
				a, b := &l.vertices[order[i-1]], &l.vertices[order[i]]
				if a.node < 0 || b.node < 0 {
					dummies++
				}
				if need := l.separation(order[i-1], order[i]); b.y-a.y < need-1e-6 {
					t.Errorf("%s: layer %d, places %d and %d are %.2f apart, want at least %.2f", name, lay, i-1, i, b.y-a.y, need)
				}
			}
		}
		for _, v := range l.vertices {
			if v.y-v.h/2 < -1e-6 {
				t.Errorf("%s: a vertex starts above the drawing (%.2f)", name, v.y-v.h/2)
			}
		}
		if name == "graph120" && dummies == 0 {
			t.Errorf("%s: no long edge: the test proves nothing", name)
		}
	}
}

func TestLongestPathLayersAreThePlansWaves(t *testing.T) {
	d := &Diagram{
		Nodes: nodes("base", "ruby", "python", "app", "deploy", "linter"),
		Edges: []Edge{{"base", "ruby"}, {"base", "python"}, {"ruby", "app"}, {"python", "app"},
			{"app", "deploy"}, {"base", "deploy"}},
	}
	lay, err := Arrange(d)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"base": 0, "linter": 0, "ruby": 1, "python": 1, "app": 2, "deploy": 3}
	for i, n := range d.Nodes {
		if got := lay.l.vertices[i].layer; got != want[n.ID] {
			t.Errorf("%s in layer %d, want %d", n.ID, got, want[n.ID])
		}
	}
}

func nodes(ids ...string) []Node {
	out := make([]Node, len(ids))
	for i, id := range ids {
		out[i] = Node{ID: id}
	}
	return out
}

// tree is a complete tree of the given depth and fan-out whose paths sort
// the children of different parents among each other.
func tree(depth, fanout int) *Diagram {
	d := &Diagram{}
	var grow func(id string, level int)
	grow = func(id string, level int) {
		d.Nodes = append(d.Nodes, Node{ID: id})
		if level == depth {
			return
		}
		for c := range fanout {
			// The child's name starts with its index, not its parent's.
			child := fmt.Sprintf("%d-%s", c, id)
			d.Edges = append(d.Edges, Edge{From: id, To: child})
			grow(child, level+1)
		}
	}
	grow("root", 0)
	sortNodes(d.Nodes)
	return d
}
