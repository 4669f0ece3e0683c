package chain

import (
	"bytes"
	"encoding/xml"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opsctl/opsctl/pkg/chain/picture"
)

// svgNodes parses an SVG strictly and returns the data-id of each
// project's box, in document order.
func svgNodes(t *testing.T, svg []byte) []string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var ids []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return ids
		}
		if err != nil {
			t.Fatalf("not well-formed SVG: %v", err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "g" {
			var class, id string
			for _, a := range el.Attr {
				switch a.Name.Local {
				case "class":
					class = a.Value
				case "data-id":
					id = a.Value
				}
			}
			if class == "node" {
				ids = append(ids, id)
			}
		}
	}
}

func TestGraphSVGDrawsEveryProjectOfTheExamples(t *testing.T) {
	g := scanDir(t, "../../examples/images", AnyRegistry())
	var out bytes.Buffer
	if err := g.WriteSVG(&out); err != nil {
		t.Fatal(err)
	}
	ids := svgNodes(t, out.Bytes())
	slices.Sort(ids)
	var want []string
	for _, p := range g.Projects {
		want = append(want, p.Path)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("boxes %q, want the projects %q", ids, want)
	}
	if !strings.Contains(out.String(), "chain graph: 6 projects") {
		t.Errorf("no title naming the 6 projects:\n%s", out.String())
	}
}

func TestPlanSVGDrawsThePlanOnly(t *testing.T) {
	g := scanDir(t, "../../examples/images", AnyRegistry())
	plan, err := g.Plan([]string{"ops/ruby"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := plan.WriteSVG(&out, g); err != nil {
		t.Fatal(err)
	}
	ids := svgNodes(t, out.Bytes())
	var want []string
	for _, wave := range plan.Waves {
		want = append(want, wave...)
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("boxes %q, want the plan's projects %q", ids, want)
	}
	d := g.PlanDiagram(plan)
	for _, e := range d.Edges {
		if !slices.Contains(want, e.From) || !slices.Contains(want, e.To) {
			t.Errorf("edge %s -> %s leaves the plan", e.From, e.To)
		}
	}
}

func TestGraphDiagramKeepsCycles(t *testing.T) {
	g := NewGraph([]*Project{
		{Path: "g/a", Upstreams: []string{"g/b"}},
		{Path: "g/b", Upstreams: []string{"g/a"}},
		{Path: "g/c", Upstreams: []string{"g/a"}},
	}, nil)
	var out bytes.Buffer
	if err := g.WriteSVG(&out); err != nil {
		t.Fatal(err)
	}
	if n := len(svgNodes(t, out.Bytes())); n != 3 {
		t.Errorf("%d boxes, want 3", n)
	}
	if !strings.Contains(out.String(), "1 cycle") || !strings.Contains(out.String(), "dependency cycle") {
		t.Error("the cycle is not named in the title and the legend")
	}
}

// TestRunDiagramStates maps every step state, and marks as stopped the
// waiting projects below a failed or canceled one, directly or not.
func TestRunDiagramStates(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	step := func(s StepState, pipeline int64, reason string) *Step {
		return &Step{State: s, PipelineID: pipeline, Reason: reason, Updated: now}
	}
	r := &Run{
		ID: "20261201T100000-ab12", Status: RunFailed,
		Waves: [][]string{{"g/base"}, {"g/ruby", "g/python", "g/go"}, {"g/rails", "g/django", "g/gin", "g/cli"}, {"g/bundle"}},
		Upstreams: map[string][]string{
			"g/ruby": {"g/base"}, "g/python": {"g/base"}, "g/go": {"g/base"},
			"g/rails": {"g/ruby"}, "g/django": {"g/python"}, "g/gin": {"g/go"}, "g/cli": {"g/go"},
			"g/bundle": {"g/rails", "g/django"},
		},
		Steps: map[string]*Step{
			"g/base":   step(StepSucceeded, 1, ""),
			"g/ruby":   step(StepFailed, 2, "pipeline 2 failed"),
			"g/python": step(StepRunning, 3, ""),
			"g/go":     step(StepCanceled, 4, "pipeline 4 canceled"),
			"g/rails":  step(StepWaiting, 0, ""),
			"g/django": step(StepWaiting, 0, ""),
			"g/gin":    step(StepQueued, 0, ""),
			"g/cli":    step(StepTriggered, 5, ""),
			// g/bundle has no step yet.
		},
	}
	d := r.Diagram()
	got := map[string]picture.State{}
	for _, n := range d.Nodes {
		got[n.ID] = n.State
	}
	want := map[string]picture.State{
		"g/base": picture.StateSuccess, "g/ruby": picture.StateFailed, "g/python": picture.StateRunning,
		"g/go": picture.StateCanceled, "g/rails": picture.StateStopped, "g/django": picture.StateWaiting,
		"g/gin": picture.StateQueued, "g/cli": picture.StateCreated,
		// Below the stopped g/rails, though g/django is only waiting.
		"g/bundle": picture.StateStopped,
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %q, want %q", id, got[id], w)
		}
	}
	if len(d.Edges) != 9 {
		t.Errorf("%d edges, want 9", len(d.Edges))
	}
	for _, n := range d.Nodes {
		if n.ID == "g/ruby" && n.Detail != "pipeline 2\npipeline 2 failed" {
			t.Errorf("g/ruby detail %q", n.Detail)
		}
	}
	var out bytes.Buffer
	if err := picture.WriteSVG(&out, d, picture.Options{Inline: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(svgNodes(t, out.Bytes())); n != 9 {
		t.Errorf("%d boxes, want 9", n)
	}
	if !strings.HasPrefix(out.String(), "<svg ") {
		t.Error("an inline picture must start with the svg element")
	}
}
