package chain

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Where a project's upstreams were found.
const (
	SourceDepsFile      = DepsFileName
	SourceContainerfile = "Containerfile"
	SourceDockerfile    = "Dockerfile"
	SourceNone          = "none"
)

// Project is one node of the graph: a project and what it builds on.
type Project struct {
	Path string `json:"path"`
	// Upstreams are the projects of the graph whose images this project
	// builds on, sorted.
	Upstreams []string `json:"upstreams"`
	// Source is the file the upstreams come from: .gitlab-deps,
	// Containerfile, Dockerfile or none.
	Source string `json:"source"`
	// External are the normalised references of base images that are not
	// projects of the graph, sorted.
	External []string `json:"external"`
}

// Graph is the dependency graph of a set of projects. Edges run from a
// project to its upstreams; every upstream is a project of the graph.
type Graph struct {
	Projects []*Project `json:"projects"`
	// Cycles lists one dependency cycle per strongly connected component:
	// each project of a cycle is an upstream of the next, and the last of
	// the first.
	Cycles   [][]string `json:"cycles"`
	Warnings []string   `json:"warnings"`

	index       map[string]*Project
	downstreams map[string][]string
}

// NewGraph builds a graph from projects (sorted here) whose upstreams all
// name projects of the set, and finds its cycles.
func NewGraph(projects []*Project, warnings []string) *Graph {
	g := &Graph{
		Projects:    projects,
		Cycles:      [][]string{},
		Warnings:    warnings,
		index:       make(map[string]*Project, len(projects)),
		downstreams: make(map[string][]string, len(projects)),
	}
	if g.Warnings == nil {
		g.Warnings = []string{}
	}
	sort.Slice(g.Projects, func(i, j int) bool { return g.Projects[i].Path < g.Projects[j].Path })
	for _, p := range projects {
		if p.Upstreams == nil {
			p.Upstreams = []string{}
		}
		if p.External == nil {
			p.External = []string{}
		}
		g.index[p.Path] = p
	}
	for _, p := range g.Projects {
		for _, up := range p.Upstreams {
			g.downstreams[up] = append(g.downstreams[up], p.Path)
		}
	}
	g.Cycles = g.findCycles()
	return g
}

// Project returns the project with path, or nil.
func (g *Graph) Project(path string) *Project { return g.index[path] }

// Downstreams returns the projects that build directly on path, sorted.
func (g *Graph) Downstreams(path string) []string { return g.downstreams[path] }

// findCycles runs Tarjan's algorithm and names one shortest cycle through
// the smallest project of every strongly connected component with more
// than one project.
func (g *Graph) findCycles() [][]string {
	index := map[string]int{}
	low := map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var components [][]string
	next := 0
	var visit func(v string)
	visit = func(v string) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range g.index[v].Upstreams {
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var component []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				component = append(component, w)
				if w == v {
					break
				}
			}
			if len(component) > 1 {
				components = append(components, component)
			}
		}
	}
	for _, p := range g.Projects {
		if _, seen := index[p.Path]; !seen {
			visit(p.Path)
		}
	}
	cycles := [][]string{}
	for _, component := range components {
		cycles = append(cycles, g.shortestCycle(component))
	}
	sort.Slice(cycles, func(i, j int) bool { return cycles[i][0] < cycles[j][0] })
	return cycles
}

// shortestCycle finds, by breadth-first search in build direction (from a
// project to its downstreams), the shortest way from the smallest project
// of component back to itself.
func (g *Graph) shortestCycle(component []string) []string {
	member := map[string]bool{}
	for _, p := range component {
		member[p] = true
	}
	start := slices.Min(component)
	parent := map[string]string{}
	queue := []string{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.downstreams[v] {
			if !member[w] {
				continue
			}
			if w == start {
				cycle := []string{v}
				for v != start {
					v = parent[v]
					cycle = append(cycle, v)
				}
				slices.Reverse(cycle)
				return cycle
			}
			if _, seen := parent[w]; !seen {
				parent[w] = v
				queue = append(queue, w)
			}
		}
	}
	return component // unreachable for a strongly connected component
}

// CycleError is returned by Plan when the projects to build depend on each
// other in a circle.
type CycleError struct{ Cycle []string }

func (e *CycleError) Error() string {
	return "dependency cycle: " + FormatCycle(e.Cycle)
}

// FormatCycle writes a cycle as "a -> b -> a".
func FormatCycle(cycle []string) string {
	return strings.Join(append(slices.Clone(cycle), cycle[0]), " -> ")
}

// UnknownProjectError is returned by Plan for a root that is not a project
// of the graph.
type UnknownProjectError struct{ Path string }

func (e *UnknownProjectError) Error() string {
	return fmt.Sprintf("%s: not a project of the scanned graph", e.Path)
}

// Plan is the order in which projects are rebuilt: every project of a wave
// builds after all its upstreams of the plan, which are in earlier waves.
type Plan struct {
	Waves [][]string `json:"waves"`
}

// Subgraph returns the graph of the projects of plan: each with its
// upstreams that are in the plan and its external images. Without roots, a
// plan holds every project, and its subgraph is g.
func (g *Graph) Subgraph(plan *Plan) *Graph {
	var projects []*Project
	for _, wave := range plan.Waves {
		for _, path := range wave {
			projects = append(projects, g.index[path])
		}
	}
	inPlan := make(map[string]bool, len(projects))
	for _, p := range projects {
		inPlan[p.Path] = true
	}
	sub := make([]*Project, 0, len(projects))
	for _, p := range projects {
		q := *p
		q.Upstreams = slices.DeleteFunc(slices.Clone(p.Upstreams), func(up string) bool { return !inPlan[up] })
		sub = append(sub, &q)
	}
	return NewGraph(sub, nil)
}

// Plan returns everything downstream of roots (the roots included) in
// waves. Without roots, the roots are all projects without upstreams. A
// cycle among the projects of the plan (or, without roots, anywhere in the
// graph, since its projects would otherwise be left out silently) is a
// *CycleError; an unknown root an *UnknownProjectError.
func (g *Graph) Plan(roots []string) (*Plan, error) {
	if len(roots) == 0 {
		if len(g.Cycles) > 0 {
			return nil, &CycleError{Cycle: g.Cycles[0]}
		}
		for _, p := range g.Projects {
			if len(p.Upstreams) == 0 {
				roots = append(roots, p.Path)
			}
		}
	}
	inPlan := map[string]bool{}
	queue := []string{}
	for _, r := range roots {
		if g.index[r] == nil {
			return nil, &UnknownProjectError{Path: r}
		}
		if !inPlan[r] {
			inPlan[r] = true
			queue = append(queue, r)
		}
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.downstreams[v] {
			if !inPlan[w] {
				inPlan[w] = true
				queue = append(queue, w)
			}
		}
	}
	for _, cycle := range g.Cycles {
		if inPlan[cycle[0]] {
			return nil, &CycleError{Cycle: cycle}
		}
	}
	// Kahn's algorithm, one wave at a time, counting only upstreams of the
	// plan.
	waiting := map[string]int{}
	var wave []string
	for _, p := range g.Projects {
		if !inPlan[p.Path] {
			continue
		}
		n := 0
		for _, up := range p.Upstreams {
			if inPlan[up] {
				n++
			}
		}
		waiting[p.Path] = n
		if n == 0 {
			wave = append(wave, p.Path)
		}
	}
	plan := &Plan{Waves: [][]string{}}
	for len(wave) > 0 {
		sort.Strings(wave)
		plan.Waves = append(plan.Waves, wave)
		var nextWave []string
		for _, v := range wave {
			for _, w := range g.downstreams[v] {
				if !inPlan[w] {
					continue
				}
				waiting[w]--
				if waiting[w] == 0 {
					nextWave = append(nextWave, w)
				}
			}
		}
		wave = nextWave
	}
	return plan, nil
}

// Size is the number of projects of the plan.
func (p *Plan) Size() int {
	n := 0
	for _, w := range p.Waves {
		n += len(w)
	}
	return n
}
