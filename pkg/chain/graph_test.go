package chain

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// graphOf builds a graph from "project: upstream upstream" lines.
func graphOf(t testing.TB, spec ...string) *Graph {
	t.Helper()
	var projects []*Project
	for _, line := range spec {
		path, ups, _ := strings.Cut(line, ":")
		projects = append(projects, &Project{Path: strings.TrimSpace(path), Upstreams: strings.Fields(ups), Source: SourceDepsFile})
	}
	return NewGraph(projects, nil)
}

func TestPlanBuildsDiamondBottomOnce(t *testing.T) {
	g := graphOf(t, "g/base:", "g/ruby: g/base", "g/python: g/base", "g/app: g/ruby g/python")
	plan, err := g.Plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"g/base"}, {"g/python", "g/ruby"}, {"g/app"}}
	if !reflect.DeepEqual(plan.Waves, want) {
		t.Errorf("waves = %q, want %q", plan.Waves, want)
	}
}

func TestPlanWaitsForTheLongestUpstreamPath(t *testing.T) {
	// app builds on base directly and through ruby: it must wait for ruby.
	g := graphOf(t, "base:", "ruby: base", "app: base ruby", "lone:")
	plan, err := g.Plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"base", "lone"}, {"ruby"}, {"app"}}
	if !reflect.DeepEqual(plan.Waves, want) {
		t.Errorf("waves = %q, want %q", plan.Waves, want)
	}
}

func TestPlanFromRootsOnlyTakesDownstream(t *testing.T) {
	g := graphOf(t, "base:", "ruby: base", "python: base", "app: ruby python", "other: base")
	plan, err := g.Plan([]string{"ruby"})
	if err != nil {
		t.Fatal(err)
	}
	// python is an upstream of app but not in the plan: app does not wait.
	want := [][]string{{"ruby"}, {"app"}}
	if !reflect.DeepEqual(plan.Waves, want) {
		t.Errorf("waves = %q, want %q", plan.Waves, want)
	}
	plan, err = g.Plan([]string{"ruby", "base"})
	if err != nil {
		t.Fatal(err)
	}
	want = [][]string{{"base"}, {"other", "python", "ruby"}, {"app"}}
	if !reflect.DeepEqual(plan.Waves, want) {
		t.Errorf("two roots: waves = %q, want %q", plan.Waves, want)
	}
}

func TestPlanRejectsUnknownRoot(t *testing.T) {
	_, err := graphOf(t, "a:").Plan([]string{"g/nope"})
	var unknown *UnknownProjectError
	if !errors.As(err, &unknown) || unknown.Path != "g/nope" {
		t.Errorf("err = %v, want UnknownProjectError for g/nope", err)
	}
}

func TestCyclesAreNamed(t *testing.T) {
	g := graphOf(t, "a: c", "b: a", "c: b", "d: a", "x: y", "y: x", "base:")
	want := [][]string{{"a", "b", "c"}, {"x", "y"}}
	if !reflect.DeepEqual(g.Cycles, want) {
		t.Errorf("cycles = %q, want %q", g.Cycles, want)
	}
	_, err := g.Plan(nil)
	var cycle *CycleError
	if !errors.As(err, &cycle) || err.Error() != "dependency cycle: a -> b -> c -> a" {
		t.Errorf("plan err = %v", err)
	}
	// A plan that does not reach the cycle is fine.
	if plan, err := g.Plan([]string{"base"}); err != nil || plan.Size() != 1 {
		t.Errorf("plan from base = %v, %v", plan, err)
	}
	if _, err := g.Plan([]string{"d"}); err != nil {
		t.Errorf("d is downstream of the cycle but not in it: %v", err)
	}
	if _, err := g.Plan([]string{"b"}); !errors.As(err, &cycle) {
		t.Errorf("plan from b reaches the cycle: err = %v", err)
	}
}

func TestShortestCycleInsideABigComponent(t *testing.T) {
	// a -> b -> c -> d -> a, plus a shortcut c -> a: the cycle named is a b c.
	g := graphOf(t, "a: d c", "b: a", "c: b", "d: c")
	if want := [][]string{{"a", "b", "c"}}; !reflect.DeepEqual(g.Cycles, want) {
		t.Errorf("cycles = %q, want %q", g.Cycles, want)
	}
}

func TestRenderFormats(t *testing.T) {
	g := graphOf(t, "g/base:", "g/app: g/base", "x: y", "y: x")
	g.Project("g/base").External = []string{"docker.io/library/debian:bookworm"}
	var text, dot, mermaid strings.Builder
	g.WriteText(&text)
	g.WriteDot(&dot)
	g.WriteMermaid(&mermaid)
	for _, want := range []string{"g/app    .gitlab-deps  g/base     -", "cycle: x -> y -> x"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	for _, want := range []string{`"g/base" -> "g/app";`, `"x" -> "y" [color=red, penwidth=2];`, `"docker.io/library/debian:bookworm" [shape=ellipse`} {
		if !strings.Contains(dot.String(), want) {
			t.Errorf("dot lacks %q:\n%s", want, dot.String())
		}
	}
	for _, want := range []string{"flowchart LR", `["g/app"]`, "-->", "linkStyle"} {
		if !strings.Contains(mermaid.String(), want) {
			t.Errorf("mermaid lacks %q:\n%s", want, mermaid.String())
		}
	}
}

func TestSubgraphKeepsThePlannedProjectsAndTheirEdges(t *testing.T) {
	g := graphOf(t, "base:", "ruby: base", "python: base", "app: ruby python", "other: base")
	g.Project("base").External = []string{"docker.io/library/debian:bookworm"}
	plan, err := g.Plan([]string{"ruby"})
	if err != nil {
		t.Fatal(err)
	}
	sub := g.Subgraph(plan)
	got := map[string][]string{}
	for _, p := range sub.Projects {
		got[p.Path] = p.Upstreams
	}
	want := map[string][]string{"ruby": {}, "app": {"ruby"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("subgraph %v, want %v", got, want)
	}
	if ups := g.Project("app").Upstreams; len(ups) != 2 {
		t.Errorf("Subgraph changed the graph: app's upstreams are %v", ups)
	}
	whole, err := g.Plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	var a, b strings.Builder
	g.WriteDot(&a)
	g.Subgraph(whole).WriteDot(&b)
	if a.String() != b.String() {
		t.Errorf("the subgraph of the whole plan is not the graph:\n%s\nvs\n%s", b.String(), a.String())
	}
}
