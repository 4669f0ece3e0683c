package chain

import "context"

// Planner gives the engine the plan of a new run. The engine asks it only
// when a run starts: a run keeps its plan while the graph is rescanned.
type Planner interface {
	PlanRun(roots []string) (*RunPlan, error)
}

// RunPlan is what a run needs of the graph: the projects downstream of its
// roots in waves, each project's upstreams that are in the plan, and how to
// create each project's pipeline.
type RunPlan struct {
	Waves     [][]string
	Upstreams map[string][]string
	Targets   map[string]Target
}

// GraphPlanner plans runs on a scanned graph; Refs give each project's
// GitLab id and default branch.
type GraphPlanner struct {
	Graph *Graph
	Refs  map[string]ProjectRef
}

// PlanRun implements Planner.
func (p *GraphPlanner) PlanRun(roots []string) (*RunPlan, error) {
	plan, err := p.Graph.Plan(roots)
	if err != nil {
		return nil, err
	}
	in := map[string]bool{}
	for _, w := range plan.Waves {
		for _, path := range w {
			in[path] = true
		}
	}
	rp := &RunPlan{Waves: plan.Waves, Upstreams: map[string][]string{}, Targets: map[string]Target{}}
	for path := range in {
		for _, up := range p.Graph.Project(path).Upstreams {
			if in[up] {
				rp.Upstreams[path] = append(rp.Upstreams[path], up)
			}
		}
		ref := p.Refs[path]
		rp.Targets[path] = Target{ProjectID: ref.ID, Ref: ref.DefaultBranch}
	}
	return rp, nil
}

// refRecorder remembers the projects a source listed, for their ids and
// default branches.
type refRecorder struct {
	Source
	refs map[string]ProjectRef
}

func (r *refRecorder) ListProjects(ctx context.Context) ([]ProjectRef, error) {
	refs, err := r.Source.ListProjects(ctx)
	r.refs = make(map[string]ProjectRef, len(refs))
	for _, ref := range refs {
		r.refs[ref.Path] = ref
	}
	return refs, err
}

// ScanPlanner scans the graph with s and returns a planner for runs on it.
func ScanPlanner(ctx context.Context, s Scanner) (*GraphPlanner, error) {
	rec := &refRecorder{Source: s.Source}
	s.Source = rec
	g, err := s.Scan(ctx)
	if err != nil {
		return nil, err
	}
	return &GraphPlanner{Graph: g, Refs: rec.refs}, nil
}
