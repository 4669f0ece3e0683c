package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const testGitLabURL = "https://gitlab.example.com"

// get asks the fixture's receiver for path with the given request headers
// (name, value, ...).
func (fx *engineFixture) get(path string, header ...string) *httptest.ResponseRecorder {
	fx.t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	fx.recv.Handler().ServeHTTP(rec, req)
	return rec
}

// wantPageHeaders checks the headers every page and page asset carries.
func wantPageHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, directive := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, directive) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, directive)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "*") {
		t.Errorf("%s: Content-Security-Policy %q allows more than the receiver's own files", what, csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("%s: X-Content-Type-Options %q, Referrer-Policy %q", what, h.Get("X-Content-Type-Options"), h.Get("Referrer-Policy"))
	}
}

// pageFixture is the chain base -> ruby -> app with base succeeded and
// ruby's pipeline created and running, seen by a receiver that talks to
// testGitLabURL.
func pageFixture(t *testing.T) (*engineFixture, createdPipeline) {
	t.Helper()
	fx, ruby := baseSucceeded(t)
	fx.recv.GitLabURL = testGitLabURL
	if code := fx.pipeline("ops/ruby", ruby.ID, "running", hookOpts{runID: ruby.RunID}); code != http.StatusOK {
		t.Fatalf("running: HTTP %d", code)
	}
	return fx, ruby
}

var nodeState = regexp.MustCompile(`<g class="node" data-id="([^"]+)" data-state="([^"]*)">`)

// The runs page lists the run with a link to its page; the run page draws
// every project of the plan with its state and a link to its pipeline
// page on the GitLab host only; the JSON API answers as before.
func TestPagesShowRunsAndARun(t *testing.T) {
	fx, ruby := pageFixture(t)
	run := fx.onlyRun()

	rec := fx.get("/")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	wantPageHeaders(t, "GET /", rec.Header())
	body := rec.Body.String()
	for _, want := range []string{`<a href="/ui/runs/` + run.ID + `">` + run.ID + `</a>`, "<td>ops/base</td>", `<span class="badge running">running</span>`,
		`<td class="num">1</td><td class="num">0</td><td class="num">3</td>`, `<script src="/ui/static/live.js" defer></script>`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / lacks %q:\n%s", want, body)
		}
	}

	rec = fx.get(RunPagePath(run.ID))
	if rec.Code != http.StatusOK {
		t.Fatalf("run page: %d\n%s", rec.Code, rec.Body)
	}
	wantPageHeaders(t, "run page", rec.Header())
	body = rec.Body.String()
	states := map[string]string{}
	for _, m := range nodeState.FindAllStringSubmatch(body, -1) {
		states[m[1]] = m[2]
	}
	if want := map[string]string{"ops/base": "success", "ops/ruby": "running", "ops/app": "waiting"}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("run page draws %v, want %v", states, want)
	}
	// ruby: the web_url of its creation; base: its hook named a page on
	// another host (example.com), so the link is GitLab's path on the
	// receiver's GitLab.
	rubyPage := fmt.Sprintf("%s/ops/ruby/-/pipelines/%d", testGitLabURL, ruby.ID)
	for _, want := range []string{`<a href="` + rubyPage + `">`, `<a class="pipeline" href="` + rubyPage + `">#`,
		`<a href="` + testGitLabURL + `/ops/base/-/pipelines/31">`} {
		if !strings.Contains(body, want) {
			t.Errorf("run page lacks %q", want)
		}
	}
	if strings.Contains(body, "http://example.com") {
		t.Errorf("run page links to a host that is not the receiver's GitLab")
	}

	// The JSON API is unchanged.
	rec = fx.get("/runs/" + run.ID)
	var got Run
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &got) != nil || got.ID != run.ID {
		t.Errorf("GET /runs/ID: %d %s %.200s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var list []Run
	if rec = fx.get("/runs"); json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list) != 1 {
		t.Errorf("GET /runs: %d %.200s", rec.Code, rec.Body)
	}
}

// A page that has not changed since the browser's copy answers 304; a
// pipeline event changes it.
func TestPagesAnswerNotModifiedUntilTheRunChanges(t *testing.T) {
	fx, ruby := pageFixture(t)
	path := RunPagePath(fx.onlyRun().ID)
	for _, p := range []string{path, "/"} {
		first := fx.get(p)
		tag := first.Header().Get("ETag")
		if first.Code != http.StatusOK || tag == "" {
			t.Fatalf("%s: %d, ETag %q", p, first.Code, tag)
		}
		if again := fx.get(p, "If-None-Match", tag); again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Errorf("%s again: %d with %d bytes, want 304 and none", p, again.Code, again.Body.Len())
		}
	}
	tag := fx.get(path).Header().Get("ETag")
	fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID})
	rec := fx.get(path, "If-None-Match", tag)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `data-id="ops/ruby" data-state="failed"`) ||
		!strings.Contains(rec.Body.String(), `data-id="ops/app" data-state="stopped"`) {
		t.Errorf("after ruby failed: %d, want the page with ruby failed and app stopped", rec.Code)
	}
}

// Without a GitLab URL the receiver links nowhere; an unknown run is a
// 404 page that shows the id escaped; the static files have their types.
func TestPagesEdges(t *testing.T) {
	fx, _ := pageFixture(t)
	fx.recv.GitLabURL = ""
	if body := fx.get(RunPagePath(fx.onlyRun().ID)).Body.String(); strings.Contains(body, "/-/pipelines/") {
		t.Errorf("links without a GitLab URL")
	}
	rec := fx.get("/ui/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
	if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "<script>alert") ||
		!strings.Contains(rec.Body.String(), "No run &lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("unknown run: %d\n%s", rec.Code, rec.Body)
	}
	wantPageHeaders(t, "404 page", rec.Header())
	if rec = fx.get("/?before=%3Cx%3E"); rec.Code != http.StatusBadRequest {
		t.Errorf("GET /?before=<x>: %d", rec.Code)
	}
	for path, ctype := range map[string]string{"/ui/static/style.css": "text/css; charset=utf-8", "/ui/static/live.js": "text/javascript; charset=utf-8"} {
		rec := fx.get(path)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ctype || rec.Body.Len() < 500 {
			t.Errorf("%s: %d %q, %d bytes", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
		}
		wantPageHeaders(t, path, rec.Header())
	}
	for _, path := range []string{"/ui/static/run.html", "/ui/static/", "/ui/static/..%2fpages.go", "/nothing"} {
		if rec := fx.get(path); rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, rec.Code)
		}
	}
}

// storeRun puts run into the fixture's state file as it is: the tests of
// hostile content write what no engine would.
func (fx *engineFixture) storeRun(run *Run) {
	fx.t.Helper()
	err := fx.engine.db.Update(func(tx *bolt.Tx) error { return saveRun(tx, run) })
	if err != nil {
		fx.t.Fatal(err)
	}
}

// A run the state file holds in a shape the engine never writes (a step
// that is null, a project in two waves) breaks no page: the runs page
// lists it (without a panic on the null step), its page answers 500 with
// the state check's one line under the pages' headers.
func TestPagesOfABrokenRun(t *testing.T) {
	fx := newEngineFixture(t, nil)
	broken := &Run{ID: "20261126-101500-a1b2c3d4"}
	err := fx.engine.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRuns).Put([]byte(broken.ID), []byte(`{"id":"`+broken.ID+`","roots":["g/a"],"status":"running",`+
			`"waves":[["g/a"],["g/a"]],"steps":{"g/a":null}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec := fx.get("/"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), broken.ID) {
		t.Errorf("GET /: %d\n%s", rec.Code, rec.Body)
	}
	rec := fx.get(RunPagePath(broken.ID))
	if rec.Code != http.StatusInternalServerError || strings.Count(rec.Body.String(), "\n") != 1 || !strings.Contains(rec.Body.String(), "corrupt") {
		t.Errorf("run page: %d %q", rec.Code, rec.Body)
	}
	wantPageHeaders(t, "500 page", rec.Header())
}

// discardResponse is a ResponseWriter that keeps the code and drops the
// body: what a client that never reads costs the receiver is the drawing.
type discardResponse struct {
	header http.Header
	code   int
}

func (d *discardResponse) Header() http.Header         { return d.header }
func (d *discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardResponse) WriteHeader(code int)        { d.code = code }

// allocatedBy is the bytes the Go heap allocated while f ran.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestRunPageIsDrawnOncePerStateOfTheRun: anyone who reaches the receiver
// may ask for a run's page again and again, without If-None-Match. Drawing
// a run of 1,000 projects allocates megabytes; asking eight more times
// while the run does not change must not draw it eight more times (it
// costs less, all eight together, than the first drawing).
func TestRunPageIsDrawnOncePerStateOfTheRun(t *testing.T) {
	fx := newEngineFixture(t, nil)
	fx.recv.GitLabURL = testGitLabURL
	run := bigRun(t, 1000)
	fx.storeRun(run)
	h := fx.recv.Handler()
	ask := func() int {
		w := &discardResponse{header: http.Header{}}
		h.ServeHTTP(w, httptest.NewRequest("GET", RunPagePath(run.ID), nil))
		return w.code
	}
	var code int
	first := allocatedBy(func() { code = ask() })
	if code != http.StatusOK {
		t.Fatalf("first request: HTTP %d", code)
	}
	again := allocatedBy(func() {
		for range 8 {
			if code := ask(); code != http.StatusOK {
				t.Errorf("HTTP %d", code)
			}
		}
	})
	t.Logf("first request: %d bytes allocated; 8 more: %d", first, again)
	if again > first {
		t.Errorf("8 more requests of the unchanged page allocated %d bytes, the first %d: the page is drawn for every request", again, first)
	}
	// A change of the run draws it again.
	changed := run.Waves[2][0]
	run.Steps[changed].State = StepRunning
	fx.storeRun(run)
	rec := fx.get(RunPagePath(run.ID))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `data-id="`+changed+`" data-state="running"`) {
		t.Errorf("after a change: HTTP %d, the change not shown", rec.Code)
	}
}

// TestRunPagesDrawnAtOnceAreBounded: while maxPageDraws pages are being
// drawn, another run page that is not kept waits for a turn, and a
// request that gives up (or waits too long) gets 503 with Retry-After,
// not one more drawing at once; a page already drawn is still answered.
// Beyond maxPageQueue waiting requests (each holds its run), 503 at once.
func TestRunPagesDrawnAtOnceAreBounded(t *testing.T) {
	fx, _ := pageFixture(t)
	id := fx.onlyRun().ID
	if rec := fx.get(RunPagePath(id)); rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d", rec.Code)
	}
	other := bigRun(t, 30)
	fx.storeRun(other)
	queue, turns := fx.recv.runPages.lanes()
	for range maxPageDraws {
		queue <- struct{}{}
		turns <- struct{}{} // drawings under way
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a client that gives up before a turn comes
	rec := httptest.NewRecorder()
	fx.recv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", RunPagePath(other.ID), nil).WithContext(ctx))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a page drawn beyond %d at once: HTTP %d, Retry-After %q; want 503 and Retry-After", maxPageDraws, rec.Code, rec.Header().Get("Retry-After"))
	}
	wantPageHeaders(t, "busy page", rec.Header())
	if rec := fx.get(RunPagePath(id)); rec.Code != http.StatusOK {
		t.Errorf("a page drawn already, while busy: HTTP %d", rec.Code)
	}
	// The queue full: 503 at once, even for a client that would wait.
	for range maxPageQueue {
		queue <- struct{}{}
	}
	rec = fx.get(RunPagePath(other.ID))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a request beyond the queue: HTTP %d, Retry-After %q; want 503 and Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	for range maxPageQueue + maxPageDraws {
		<-queue
	}
	for range maxPageDraws {
		<-turns
	}
	if rec := fx.get(RunPagePath(other.ID)); rec.Code != http.StatusOK {
		t.Errorf("once a turn is free: HTTP %d", rec.Code)
	}
}

// A receiver that talks to GitLab over https links to its pipeline pages
// over https only: a recorded http:// page of the same host (a payload's
// url field) would send the reader's browser there in clear text, so the
// page under the GitLab URL is linked instead.
func TestPipelineLinkKeepsTheSchemeOfTheGitLabURL(t *testing.T) {
	for _, tc := range []struct{ gitlab, recorded, want string }{
		{"https://gitlab.example.com", "http://gitlab.example.com/g/p/-/pipelines/5", "https://gitlab.example.com/g/p/-/pipelines/5"},
		{"https://gitlab.example.com", "https://gitlab.example.com/g/p/-/pipelines/5?x=1", "https://gitlab.example.com/g/p/-/pipelines/5?x=1"},
		{"http://gitlab.example.com", "http://gitlab.example.com/g/p/-/pipelines/5?x=1", "http://gitlab.example.com/g/p/-/pipelines/5?x=1"},
		{"http://gitlab.example.com", "https://gitlab.example.com/g/p/-/pipelines/5?x=1", "https://gitlab.example.com/g/p/-/pipelines/5?x=1"},
	} {
		rc := &Receiver{GitLabURL: tc.gitlab}
		if got := rc.pipelineLink("g/p", &Step{PipelineID: 5, PipelineURL: tc.recorded}); got != tc.want {
			t.Errorf("GitLab %s, recorded %s: link %q, want %q", tc.gitlab, tc.recorded, got, tc.want)
		}
	}
}

// The read endpoints and pages are open to whoever reaches the receiver,
// and each read decodes runs: while maxReads requests read, another waits
// for a turn and then gets 503 with Retry-After (before: every request
// read at once, without a bound); webhooks and /healthz do not wait.
func TestReadsOfRunsAtOnceAreBounded(t *testing.T) {
	fx, ruby := pageFixture(t)
	old := readWait
	readWait = 50 * time.Millisecond
	t.Cleanup(func() { readWait = old })
	fx.get("/runs") // the limiter's turns exist from the first read on
	if fx.recv.reads.turns == nil {
		t.Fatal("GET /runs read without a turn: reads of runs have no bound")
	}
	for range maxReads {
		fx.recv.reads.turns <- struct{}{} // every turn taken by a slow reader
	}
	for _, path := range []string{"/runs", "/runs/" + fx.onlyRun().ID, "/", RunPagePath(fx.onlyRun().ID)} {
		rec := fx.get(path)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "busy") {
			t.Errorf("GET %s with every turn taken: %d, Retry-After %q, %.200q; want 503 naming the load", path, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
		if strings.HasPrefix(path, "/runs") == (rec.Header().Get("Content-Security-Policy") != "") {
			t.Errorf("GET %s: the 503 carries the headers of the other kind of answer: %v", path, rec.Header())
		}
	}
	if rec := fx.get("/healthz"); rec.Code != http.StatusOK {
		t.Errorf("/healthz waits for the reads: %d", rec.Code)
	}
	if code := fx.pipeline("ops/ruby", ruby.ID, "success", hookOpts{runID: ruby.RunID}); code != http.StatusOK {
		t.Errorf("a webhook while every read turn is taken: HTTP %d", code)
	}
	for range maxReads {
		<-fx.recv.reads.turns
	}
	if rec := fx.get("/runs"); rec.Code != http.StatusOK {
		t.Errorf("GET /runs once the turns are free: %d", rec.Code)
	}
}
