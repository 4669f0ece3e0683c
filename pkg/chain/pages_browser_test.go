package chain

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/opsctl/opsctl/internal/browsertest"
	"github.com/opsctl/opsctl/internal/testenv"
)

// pwnCounter defines window.__pwn, which every payload of the attack test
// calls, and counts its calls: added through the DevTools protocol before
// the page's content, so that no page policy governs it.
const pwnCounter = `window.__pwned = 0; window.__pwn = function () { window.__pwned++; };`

// hostileRun is a run whose every text came from an attacker: markup and
// script in the run id, the project paths, the roots, what started it,
// the reasons, and javascript: and markup-laden pipeline pages.
func hostileRun() *Run {
	img := `<img src=x onerror=__pwn()>`
	script := `<script>__pwn()</script>`
	svg := `"><svg onload=__pwn()>`
	a, b, c := "g/"+script, "g/"+img, "g/"+svg
	now := time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)
	return &Run{
		ID: `20261126-101500-a1b2c3d4` + img, Roots: []string{a}, Status: RunFailed, Created: now,
		StartedBy: img + script, Waves: [][]string{{a}, {b, c}},
		Upstreams: map[string][]string{b: {a}, c: {a}},
		Targets:   map[string]Target{b: {Ref: "main"}, c: {Ref: "main"}},
		Steps: map[string]*Step{
			a: {State: StepSucceeded, PipelineID: 1, PipelineURL: "javascript:__pwn()", Updated: now},
			b: {State: StepFailed, PipelineID: 2, Reason: script + img, PipelineURL: testGitLabURL + `/x/-/pipelines/2"><script>__pwn()</script>`, Updated: now},
			c: {State: StepRunning, PipelineID: 3, PipelineURL: "https://evil.example.net/-/pipelines/3", Updated: now},
		},
	}
}

// stripCSP serves h without its Content-Security-Policy: the escaping
// alone must keep the payloads inert.
func stripCSP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(cspStripper{w}, r)
	})
}

type cspStripper struct{ http.ResponseWriter }

func (s cspStripper) WriteHeader(code int) {
	s.Header().Del("Content-Security-Policy")
	s.ResponseWriter.WriteHeader(code)
}

func (s cspStripper) Write(b []byte) (int, error) {
	s.Header().Del("Content-Security-Policy")
	return s.ResponseWriter.Write(b)
}

// TestPagesRunNoAttackersScript opens the runs page and the page of a run
// full of markup, script and javascript: links in Chromium, with the
// receiver's Content-Security-Policy and without it: nothing runs (the
// payloads call a counter), every payload reads back as text, the only
// links lead to the receiver itself or to its GitLab, and a live update
// of the page (the script swapping in new content) runs nothing either.
func TestPagesRunNoAttackersScript(t *testing.T) {
	fx := newEngineFixture(t, nil)
	fx.recv.GitLabURL = testGitLabURL
	run := hostileRun()
	fx.storeRun(run)
	ctx := browsertest.New(t, 1280, 900)
	browsertest.WatchCSP(t, ctx)
	_ = browsertest.Value(t, ctx, "installing the counter", func(ctx context.Context, target *chromedp.Target) (cdppage.AddScriptToEvaluateOnNewDocumentResult, error) {
		return cdp.Call(ctx, target, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: pwnCounter})
	})
	for _, tc := range []struct {
		name    string
		handler http.Handler
	}{{"with-csp", fx.recv.Handler()}, {"without-csp", stripCSP(fx.recv.Handler())}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			browsertest.Do(t, ctx, "opening the runs page", chromedp.Navigate(srv.URL+"/"))
			href := browsertest.Value(t, ctx, "finding the run's link", chromedp.Evaluate[string](`document.querySelector('table.runs a').getAttribute('href')`))
			if href != RunPagePath(run.ID) {
				t.Errorf("the runs page links the run as %q, want %q", href, RunPagePath(run.ID))
			}
			wantInert(t, ctx, tc.name == "with-csp", run.StartedBy)
			browsertest.Do(t, ctx, "opening the run page", chromedp.Navigate(srv.URL+href))
			wantInert(t, ctx, tc.name == "with-csp", run.ID, run.StartedBy, hostileRun().Steps["g/<img src=x onerror=__pwn()>"].Reason)
			for project := range run.Steps {
				wantInert(t, ctx, false, project)
			}
			browsertest.KeepArtifact(t, "hostile-run.png", browsertest.FullScreenshot(t, ctx))

			// The script swaps in the changed page: still nothing runs.
			changed := hostileRun()
			changed.Steps["g/\"><svg onload=__pwn()>"].State = StepSucceeded
			fx.storeRun(changed)
			swapped := func() bool {
				state, _ := browsertest.Run(ctx, chromedp.Evaluate[string](
					`Array.from(document.querySelectorAll('tr.step')).filter(r => r.dataset.project.startsWith('g/"')).map(r => r.dataset.state)[0] || ''`))
				return state == "success"
			}
			if !testenv.WaitUntil(t, 30*time.Second, swapped) {
				t.Fatalf("the page did not show the change")
			}
			wantInert(t, ctx, tc.name == "with-csp")
			fx.storeRun(hostileRun())
		})
	}
}

// wantInert checks the page in the tab: no payload ran, each of texts
// reads back in the page's text, every link leads to the receiver or to
// testGitLabURL, and (with csp) the policy saw no violation.
func wantInert(t *testing.T, ctx context.Context, csp bool, texts ...string) {
	t.Helper()
	if n := browsertest.Value(t, ctx, "counting payload calls", chromedp.Evaluate[int](`window.__pwned`)); n != 0 {
		t.Errorf("%d payload(s) ran", n)
	}
	text := browsertest.Value(t, ctx, "reading the text", chromedp.Evaluate[string](`document.documentElement.textContent`))
	for _, want := range texts {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %q as text", want)
		}
	}
	links := browsertest.Value(t, ctx, "reading the links", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href') || '')`))
	for _, l := range links {
		if !strings.HasPrefix(l, "/") && !strings.HasPrefix(l, testGitLabURL+"/") {
			t.Errorf("link to %q", l)
		}
		if strings.ContainsAny(l, `<>"`) {
			t.Errorf("link with markup %q", l)
		}
	}
	if elems := browsertest.Value(t, ctx, "counting foreign elements", chromedp.Evaluate[int](
		`document.querySelectorAll('img, main script, svg svg, [onerror], [onload]').length`)); elems != 0 {
		t.Errorf("%d elements of the payloads made it into the page", elems)
	}
	if csp {
		if v := browsertest.CSPViolations(t, ctx); len(v) > 0 {
			t.Errorf("Content-Security-Policy violations: %q", v)
		}
	}
}

// TestPagesFollowWithoutJavaScript opens a run page in Chromium with
// JavaScript off: the page reloads itself (its <noscript> refresh) and so
// shows a pipeline event too.
func TestPagesFollowWithoutJavaScript(t *testing.T) {
	fx, ruby := pageFixture(t)
	srv := httptest.NewServer(fx.recv.Handler())
	defer srv.Close()
	ctx := browsertest.New(t, 1000, 700)
	_ = browsertest.Value(t, ctx, "turning JavaScript off", func(ctx context.Context, target *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, target, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	})
	browsertest.Do(t, ctx, "opening the run page", chromedp.Navigate(srv.URL+RunPagePath(fx.onlyRun().ID)))
	_ = browsertest.Value(t, ctx, "marking the window", chromedp.Evaluate[bool](`window.__sameDocument = true`))
	fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID})
	reloaded := func() bool {
		state, _ := browsertest.Run(ctx, chromedp.Evaluate[string](
			`window.__sameDocument ? 'same' : document.querySelector('g.node[data-id="ops/ruby"]').dataset.state`))
		return state == "failed"
	}
	if !testenv.WaitUntil(t, 30*time.Second, reloaded) {
		t.Fatalf("without JavaScript the page did not reload to show ruby failed")
	}
	if live := browsertest.Value(t, ctx, "reading the status", chromedp.Evaluate[string](`document.getElementById('live-status').textContent`)); !strings.Contains(live, "reloads every 5 s") {
		t.Errorf("without JavaScript the page says %q, want that it reloads itself", live)
	}
}
