package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/opsctl/opsctl/internal/browsertest"
	"github.com/opsctl/opsctl/internal/fakegitlab"
	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/chain"
)

// fakeWeb is a GitLab group whose run, once base succeeded, has a project
// of every kind: ruby fails (app below it stops), python keeps running
// (tools below it waits).
func fakeWeb(t *testing.T) *fakegitlab.Server {
	t.Helper()
	fake := fakegitlab.New()
	t.Cleanup(fake.Close)
	fake.AddToken(e2eToken, "api")
	for path, deps := range map[string]string{
		"web/base": "", "web/lang/ruby": "web/base", "web/lang/python": "web/base",
		"web/app": "web/lang/ruby", "web/tools/linter": "web/lang/python",
	} {
		fake.AddProject(fakegitlab.ProjectSpec{Path: path, Files: map[string]string{".gitlab-deps": deps + "\n"}})
	}
	return fake
}

// TestChainServePagesFollowARunInChromium runs `chain serve` against the
// fake GitLab and opens its pages in headless Chromium: the runs page lists
// the run; the run page draws every project of the plan with its state
// (success, running, failed, stopped, waiting), links each to its GitLab
// pipeline page, and shows the next pipeline event without a reload; no
// Content-Security-Policy violation. `chain status RUN` names the page.
// Screenshots of both pages are kept (browsertest.ArtifactsEnv).
func TestChainServePagesFollowARunInChromium(t *testing.T) {
	w := startWebRun(t)
	ctx := browsertest.New(t, 1280, 800)
	browsertest.WatchCSP(t, ctx)
	href := w.wantRunsPage(t, ctx)
	browsertest.Do(t, ctx, "opening the run page", chromedp.Navigate(href))
	wantRunPage(t, ctx, map[string]string{"web/base": "success", "web/lang/ruby": "failed", "web/lang/python": "running",
		"web/app": "stopped", "web/tools/linter": "waiting"})
	rubyPage := fmt.Sprintf("%s/web/lang/ruby/-/pipelines/%d", w.e.fake.URL(), w.pipeline("web/lang/ruby"))
	link := browsertest.Value(t, ctx, "reading ruby's link", chromedp.Evaluate[string](
		`document.querySelector('g.node[data-id="web/lang/ruby"] a').getAttribute('href')`))
	if link != rubyPage {
		t.Errorf("ruby's box links to %q, want its GitLab pipeline page %q", link, rubyPage)
	}
	browsertest.KeepArtifact(t, "run-page.png", browsertest.FullScreenshot(t, ctx))
	w.wantLiveUpdate(t, ctx)
	if v := browsertest.CSPViolations(t, ctx); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %q", v)
	}
	browsertest.KeepArtifact(t, "run-page-updated.png", browsertest.FullScreenshot(t, ctx))

	resp, err := http.Get(href)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") == "" {
		t.Errorf("run page headers %v", resp.Header)
	}
	out, stderr, code := testenv.Run(t, "", "chain", "status", w.run.ID, "--server", w.e.recv.url())
	if code != 0 || !strings.HasSuffix(out, "page: "+href+"\n") {
		t.Errorf("chain status RUN: exit %d, %s\n%s", code, out, stderr)
	}
	if out, _, _ := testenv.Run(t, "", "chain", "status", w.run.ID, "--server", w.e.recv.url(), "-o", "json"); strings.Contains(out, "page:") {
		t.Errorf("chain status -o json names the page outside the JSON")
	}
}

// webRun is a receiver running a run of fakeWeb: base succeeded, ruby
// failed, python running.
type webRun struct {
	e       *chainE2E
	run     chain.Run
	mu      sync.Mutex
	created map[string]int64 // pipelines created through the API
}

// startWebRun starts the receiver and base's successful pipeline, and
// waits until the run has ruby failed and python running.
func startWebRun(t *testing.T) *webRun {
	w := &webRun{e: newChainE2EOn(t, fakeWeb(t), "web"), created: map[string]int64{}}
	ci := w.e.ci
	ci.pl.OnCreate = func(p fakegitlab.Pipeline) {
		w.mu.Lock()
		w.created[p.Project] = p.ID
		w.mu.Unlock()
		if p.Project == "web/lang/ruby" {
			ci.build(p.ID, "failed")
			return
		}
		ci.wg.Add(1)
		go func() {
			defer ci.wg.Done()
			ci.deliver(p.ID, "running")
		}()
	}
	w.e.recv.start()
	base := ci.pl.Start("web/base", "main", "schedule")
	ci.build(base, "success")
	everyState := func() bool {
		runs := w.e.recv.runs(t)
		if len(runs) != 1 {
			return false
		}
		w.run = runs[0]
		s := w.run.Steps
		return s["web/lang/ruby"].State == chain.StepFailed && s["web/lang/python"].State == chain.StepRunning
	}
	if !testenv.WaitUntil(t, 30*time.Second, everyState) {
		t.Fatalf("the run did not reach ruby failed and python running: %+v\n%s", w.run, w.e.recv.stderr)
	}
	return w
}

func (w *webRun) pipeline(project string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.created[project]
}

// wantRunsPage opens the runs page, checks the run's row, keeps a
// screenshot and returns the address of the run's page.
func (w *webRun) wantRunsPage(t *testing.T, ctx context.Context) string {
	t.Helper()
	browsertest.Do(t, ctx, "opening the runs page", chromedp.Navigate(w.e.recv.url()+"/"))
	row := browsertest.Value(t, ctx, "reading the runs table", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('table.runs tbody tr td')).map(td => td.textContent)`))
	if len(row) < 7 || row[0] != w.run.ID || row[1] != "web/base" || row[3] != "failed" || row[4] != "1" || row[5] != "1" || row[6] != "5" {
		t.Errorf("runs page row %q, want run %s of web/base, failed, 1 done, 1 failed, 5 projects", row, w.run.ID)
	}
	browsertest.KeepArtifact(t, "runs-page.png", browsertest.FullScreenshot(t, ctx))
	href := browsertest.Value(t, ctx, "following the run's link", chromedp.Evaluate[string](`document.querySelector('table.runs a').href`))
	if href != w.e.recv.url()+chain.RunPagePath(w.run.ID) {
		t.Errorf("the run links to %q", href)
	}
	return href
}

// wantLiveUpdate delivers python's success and waits for the open run page
// to show it, and the linter's new pipeline, without a reload: a reload
// would lose the mark set on the window.
func (w *webRun) wantLiveUpdate(t *testing.T, ctx context.Context) {
	t.Helper()
	_ = browsertest.Value(t, ctx, "marking the window", chromedp.Evaluate[bool](`window.__sameDocument = true`))
	w.e.ci.deliver(w.pipeline("web/lang/python"), "success")
	shown := func() bool {
		states, _ := browsertest.Run(ctx, chromedp.Evaluate[[]string](
			`['web/lang/python', 'web/tools/linter'].map(p => document.querySelector('g.node[data-id="' + p + '"]').dataset.state)`))
		return len(states) == 2 && states[0] == "success" && states[1] != "waiting"
	}
	if !testenv.WaitUntil(t, 30*time.Second, shown) {
		t.Fatalf("the run page did not show python's success and the linter's pipeline")
	}
	if !browsertest.Value(t, ctx, "reading the mark", chromedp.Evaluate[bool](`window.__sameDocument === true`)) {
		t.Errorf("the page was reloaded")
	}
}

// wantRunPage checks the run page in the tab: the SVG graph drawn, one box
// and one table row per project of the plan, each in its state.
func wantRunPage(t *testing.T, ctx context.Context, want map[string]string) {
	t.Helper()
	size := browsertest.Value(t, ctx, "measuring the graph", chromedp.Evaluate[[2]float64](
		`(() => { const r = document.querySelector('figure.graph svg').getBoundingClientRect(); return [r.width, r.height]; })()`))
	if size[0] < 200 || size[1] < 100 {
		t.Errorf("the graph is drawn %vx%v", size[0], size[1])
	}
	for _, sel := range []string{"g.node", "tr.step"} {
		attr := "data-id"
		if sel == "tr.step" {
			attr = "data-project"
		}
		got := browsertest.Value(t, ctx, "reading "+sel, chromedp.Evaluate[map[string]string](
			`Object.fromEntries(Array.from(document.querySelectorAll('`+sel+`')).map(n => [n.getAttribute('`+attr+`'), n.getAttribute('data-state')]))`))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", sel, got, want)
		}
	}
	words := browsertest.Value(t, ctx, "reading the words", chromedp.Evaluate[string](`document.querySelector('figure.graph').textContent`))
	for _, w := range []string{"success", "running", "failed", "stopped: upstream failed", "waiting"} {
		if !strings.Contains(words, w) {
			t.Errorf("the graph does not say %q", w)
		}
	}
}
