package picture

import (
	"fmt"
	"math/rand/v2"
)

// plan7 is a plan of seven projects in three waves whose alphabetical
// order crosses edges that a better order does not: the optimum is 0.
func plan7() *Diagram {
	return &Diagram{
		Title: "chain plan: 7 projects in 3 waves",
		Nodes: []Node{
			{ID: "platform/base"}, {ID: "tools/linter"},
			{ID: "platform/node"}, {ID: "platform/python"}, {ID: "platform/ruby"},
			{ID: "apps/payments/billing-service-with-a-very-long-project-name"}, {ID: "apps/shop"},
		},
		Edges: []Edge{
			{"platform/base", "platform/node"}, {"platform/base", "platform/python"}, {"platform/base", "platform/ruby"},
			{"platform/python", "apps/payments/billing-service-with-a-very-long-project-name"},
			{"tools/linter", "apps/payments/billing-service-with-a-very-long-project-name"},
			{"platform/ruby", "apps/shop"}, {"platform/node", "apps/shop"},
		},
		Layers: [][]string{
			{"platform/base", "tools/linter"},
			{"platform/node", "platform/python", "platform/ruby"},
			{"apps/payments/billing-service-with-a-very-long-project-name", "apps/shop"},
		},
	}
}

var serviceWords = []string{"api", "worker", "gateway", "billing", "search", "auth", "mailer", "reports",
	"frontend", "scheduler", "ingest", "export", "media", "cache", "notify", "ledger"}

// chainGraph is a scanned graph of n projects shaped like a group of
// container images: a few base images, language runtimes on them,
// frameworks on those, the many application images on the frameworks and
// runtimes, and a few bundles built from applications. Each project builds
// on one project of the tier above and sometimes on a second one further
// up, which makes edges that span several layers. Its paths sort in an
// order unrelated to the structure, as a real group's do. The same seed
// gives the same graph.
func chainGraph(n int, seed uint64) *Diagram {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	d := &Diagram{Title: fmt.Sprintf("chain graph: %d projects", n)}
	// Shares of the tiers: bases, runtimes, frameworks, applications, bundles.
	sizes := []int{max(2, n/40), max(1, n/10), max(1, n/6), 0, max(1, n/20)}
	sizes[3] = max(0, n-sizes[0]-sizes[1]-sizes[2]-sizes[4])
	var tiers [][]string
	prefixes := []string{"base", "runtime", "framework", "", "deploy"}
	i := 0
	for tier, size := range sizes {
		var ids []string
		for range size {
			var id string
			switch tier {
			case 0:
				id = fmt.Sprintf("base/%s-%d", []string{"debian", "alpine", "ubi", "ubuntu"}[i%4], 12+i)
			case 3:
				id = fmt.Sprintf("team-%02d/%s-%03d", rng.IntN(12), serviceWords[rng.IntN(len(serviceWords))], i)
			default:
				id = fmt.Sprintf("%s/%s-%03d", prefixes[tier], serviceWords[rng.IntN(len(serviceWords))], i)
			}
			i++
			ids = append(ids, id)
			d.Nodes = append(d.Nodes, Node{ID: id})
			if tier == 0 {
				continue
			}
			above := tiers[tier-1]
			if tier == 3 && rng.IntN(3) == 0 {
				above = tiers[1] // an application straight on a runtime
			}
			d.Edges = append(d.Edges, Edge{From: above[rng.IntN(len(above))], To: id})
			if rng.IntN(10) < 3 {
				t := rng.IntN(tier)
				d.Edges = append(d.Edges, Edge{From: tiers[t][rng.IntN(len(tiers[t]))], To: id})
			}
		}
		tiers = append(tiers, ids)
	}
	// The nodes in path order, as a scan gives them.
	sortNodes(d.Nodes)
	return d
}

func sortNodes(nodes []Node) {
	for i := 1; i < len(nodes); i++ {
		for j := i; j > 0 && nodes[j].ID < nodes[j-1].ID; j-- {
			nodes[j], nodes[j-1] = nodes[j-1], nodes[j]
		}
	}
}

// runEveryState is a run whose projects are in every state the picture
// knows, with links to their pipelines.
func runEveryState() *Diagram {
	link := func(p string, id int) string {
		return fmt.Sprintf("https://gitlab.example.com/%s/-/pipelines/%d", p, id)
	}
	return &Diagram{
		Title: "chain run 20261201T101500-7f3a: failed",
		Nodes: []Node{
			{ID: "images/base", State: StateSuccess, Link: link("images/base", 101), Detail: "pipeline 101"},
			{ID: "images/python", State: StateSuccess, Link: link("images/python", 102), Detail: "pipeline 102"},
			{ID: "images/ruby", State: StateFailed, Link: link("images/ruby", 103), Detail: "pipeline 103\npipeline 103 failed"},
			{ID: "images/node", State: StateRunning, Link: link("images/node", 104), Detail: "pipeline 104"},
			{ID: "images/golang", State: StateCanceled, Link: link("images/golang", 105), Detail: "pipeline 105\npipeline 105 canceled"},
			{ID: "apps/django-shop", State: StateCreated, Link: link("apps/django-shop", 106), Detail: "pipeline 106"},
			{ID: "apps/rails-admin", State: StateStopped},
			{ID: "apps/frontend-web", State: StateWaiting},
			{ID: "apps/go-gateway", State: StateStopped},
			{ID: "apps/analytics-worker", State: StateQueued},
			{ID: "deploy/production-bundle", State: StateStopped},
		},
		Edges: []Edge{
			{"images/base", "images/python"}, {"images/base", "images/ruby"}, {"images/base", "images/node"},
			{"images/base", "images/golang"}, {"images/python", "apps/django-shop"}, {"images/ruby", "apps/rails-admin"},
			{"images/node", "apps/frontend-web"}, {"images/golang", "apps/go-gateway"}, {"images/python", "apps/analytics-worker"},
			{"apps/django-shop", "deploy/production-bundle"}, {"apps/rails-admin", "deploy/production-bundle"},
			{"apps/frontend-web", "deploy/production-bundle"}, {"apps/go-gateway", "deploy/production-bundle"},
		},
		Layers: [][]string{
			{"images/base"},
			{"images/golang", "images/node", "images/python", "images/ruby"},
			{"apps/analytics-worker", "apps/django-shop", "apps/frontend-web", "apps/go-gateway", "apps/rails-admin"},
			{"deploy/production-bundle"},
		},
	}
}
