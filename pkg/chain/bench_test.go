package chain

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/fakegitlab"
)

// BenchmarkScanGitLab1000 scans a group of 1,000 projects from the fake
// GitLab answering every request after 20 ms. A third of the projects have
// a .gitlab-deps (1 request), a third a Containerfile (2), a third a
// Dockerfile (3), plus 10 pages of listing. "speedup" is the time a
// one-request-at-a-time client would need (requests × 20 ms) divided by the
// time taken.
func BenchmarkScanGitLab1000(b *testing.B) {
	const projects, latency = 1000, 20 * time.Millisecond
	fake := newFake(b)
	for i := range projects {
		path := fmt.Sprintf("big/team%d/p%04d", i%10, i)
		up := fmt.Sprintf("big/team%d/p%04d", (i/2)%10, i/2)
		var files map[string]string
		switch i % 3 {
		case 0:
			files = map[string]string{".gitlab-deps": up + "\n"}
		case 1:
			files = map[string]string{"Containerfile": "ARG R=registry.example.com\nFROM ${R}/" + up + ":latest\n"}
		default:
			files = map[string]string{"Dockerfile": "FROM registry.example.com/" + up + "/runtime AS a\nFROM debian:bookworm\n"}
		}
		if i == 0 {
			files = map[string]string{"Containerfile": "FROM debian:bookworm\n"}
		}
		fake.AddProject(fakegitlab.ProjectSpec{Path: path, Files: files})
	}
	fake.SetLatency(latency)
	for _, concurrency := range []int{8, 32} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			api := newTestGitLab(b, fake, testToken)
			var elapsed time.Duration
			var requests int
			for b.Loop() {
				fake.ResetCalls()
				start := time.Now()
				g, err := scanGitLab(b, api, "big", concurrency)
				elapsed += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if len(g.Projects) != projects || len(g.Cycles) != 0 {
					b.Fatalf("%d projects, %d cycles", len(g.Projects), len(g.Cycles))
				}
				requests = len(fake.Calls())
			}
			perScan := elapsed / time.Duration(b.N)
			b.ReportMetric(float64(requests), "requests/scan")
			b.ReportMetric(perScan.Seconds(), "s/scan")
			b.ReportMetric(float64(time.Duration(requests)*latency)/float64(perScan), "speedup")
			b.ReportMetric(float64(fake.MaxInFlight()), "max-in-flight")
		})
	}
}

// bigGraph is a layered DAG of n projects, each building on 1 to 3
// projects of earlier layers.
func bigGraph(n int) []*Project {
	rng := rand.New(rand.NewPCG(1, 2))
	projects := make([]*Project, n)
	for i := range n {
		p := &Project{Path: fmt.Sprintf("g/sub%02d/p%05d", i%50, i), Source: SourceContainerfile}
		if i >= 20 {
			for range 1 + rng.IntN(3) {
				p.Upstreams = append(p.Upstreams, projects[rng.IntN(i)].Path)
			}
			p.Upstreams = sortedUnique(p.Upstreams)
		}
		projects[i] = p
	}
	return projects
}

// BenchmarkPlan10000 plans every project of a 10,000-project graph
// (NewGraph, with its cycle search, and Plan).
func BenchmarkPlan10000(b *testing.B) {
	projects := bigGraph(10000)
	var waves int
	for b.Loop() {
		g := NewGraph(projects, nil)
		plan, err := g.Plan(nil)
		if err != nil {
			b.Fatal(err)
		}
		if plan.Size() != 10000 {
			b.Fatalf("plan has %d projects", plan.Size())
		}
		waves = len(plan.Waves)
	}
	b.ReportMetric(float64(waves), "waves")
}

// BenchmarkPlanFromOneRoot10000 plans downstream of one early project in
// the same graph, as a chain run does.
func BenchmarkPlanFromOneRoot10000(b *testing.B) {
	g := NewGraph(bigGraph(10000), nil)
	for b.Loop() {
		if _, err := g.Plan([]string{"g/sub05/p00005"}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestScanOfManyProjectsIsConcurrent checks what the benchmark measures,
// without timing: a scan of 200 projects keeps 8 requests in flight.
func TestScanOfManyProjectsIsConcurrent(t *testing.T) {
	fake := newFake(t)
	for i := range 200 {
		fake.AddProject(fakegitlab.ProjectSpec{Path: fmt.Sprintf("g/p%03d", i), Files: map[string]string{"Containerfile": "FROM debian\n"}})
	}
	fake.SetLatency(5 * time.Millisecond)
	g, err := (&Scanner{Source: &GitLabSource{API: newTestGitLab(t, fake, testToken), Group: "g"}}).Scan(context.Background())
	if err != nil || len(g.Projects) != 200 {
		t.Fatalf("%v, %v", g, err)
	}
	if n := fake.MaxInFlight(); n != 8 {
		t.Errorf("max in flight %d, want the default 8", n)
	}
}
