package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/opsctl/opsctl/internal/testenv"
)

// fakePipelines stands in for GitLab's pipeline API in the engine's unit
// tests (the end-to-end tests use the fake GitLab server).
type fakePipelines struct {
	mu      sync.Mutex
	nextID  int64
	created []createdPipeline
	// failNext makes the next CreatePipeline calls of a project fail.
	failNext map[string][]error
	finds    int
	// statuses are what PipelineStatus answers, by pipeline id.
	statuses    map[int64]string
	statusCalls int
}

type createdPipeline struct {
	Project, Ref, RunID string
	ID                  int64
}

func newFakePipelines() *fakePipelines {
	return &fakePipelines{nextID: 1000, failNext: map[string][]error{}, statuses: map[int64]string{}}
}

func (f *fakePipelines) CreatePipeline(ctx context.Context, project string, t Target, runID string, roots []string) (CreatedPipeline, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if errs := f.failNext[project]; len(errs) > 0 {
		f.failNext[project] = errs[1:]
		return CreatedPipeline{}, errs[0]
	}
	f.nextID++
	f.created = append(f.created, createdPipeline{project, t.Ref, runID, f.nextID})
	return CreatedPipeline{ID: f.nextID, WebURL: fmt.Sprintf("https://gitlab.example.com/%s/-/pipelines/%d", project, f.nextID)}, nil
}

func (f *fakePipelines) FindRunPipeline(ctx context.Context, project string, t Target, runID string, since time.Time) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finds++
	for _, c := range f.created {
		if c.Project == project && c.RunID == runID {
			return c.ID, true, nil
		}
	}
	return 0, false, nil
}

func (f *fakePipelines) PipelineStatus(ctx context.Context, project string, t Target, id int64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statusCalls++
	if status, ok := f.statuses[id]; ok {
		if status == statusDeleted {
			return "", permanent(&APIError{Op: fmt.Sprintf("get pipeline %d of %s", id, project), Status: http.StatusNotFound})
		}
		return status, nil
	}
	return "", errors.New("not used")
}

// statusDeleted as a status makes PipelineStatus answer as GitLab does for
// a pipeline deleted since: 404.
const statusDeleted = "(deleted)"

func (f *fakePipelines) setStatus(id int64, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses[id] = status
}

func (f *fakePipelines) projects() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.created {
		out = append(out, c.Project)
	}
	return out
}

func (f *fakePipelines) pipelineOf(t testing.TB, project string) createdPipeline {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.created) - 1; i >= 0; i-- {
		if f.created[i].Project == project {
			return f.created[i]
		}
	}
	t.Fatalf("no pipeline of %s was created; created: %v", project, f.created)
	return createdPipeline{}
}

// testGraph builds a graph from "project: upstream upstream" lines.
func testGraph(lines ...string) *GraphPlanner {
	var projects []*Project
	refs := map[string]ProjectRef{}
	for i, line := range lines {
		name, ups, _ := strings.Cut(line, ":")
		p := &Project{Path: strings.TrimSpace(name), Upstreams: strings.Fields(ups), Source: SourceDepsFile, External: []string{}}
		slices.Sort(p.Upstreams)
		projects = append(projects, p)
		refs[p.Path] = ProjectRef{Path: p.Path, ID: int64(i + 1), DefaultBranch: "main"}
	}
	return &GraphPlanner{Graph: NewGraph(projects, nil), Refs: refs}
}

type engineFixture struct {
	t      testing.TB
	engine *Engine
	api    *fakePipelines
	recv   *Receiver
	path   string
	graph  *GraphPlanner
}

func newEngineFixture(t testing.TB, graph *GraphPlanner) *engineFixture {
	t.Helper()
	fx := &engineFixture{t: t, api: newFakePipelines(), path: filepath.Join(t.TempDir(), "chain.db"), graph: graph}
	fx.open()
	return fx
}

func (fx *engineFixture) open() {
	fx.t.Helper()
	opts := EngineOptions{StatePath: fx.path, API: fx.api}
	if fx.graph != nil {
		opts.Planner = fx.graph // a nil *GraphPlanner would be a Planner
	}
	e, err := NewEngine(opts)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.engine = e
	fx.recv = &Receiver{Engine: e, Secret: "s3cret"}
	fx.t.Cleanup(func() { e.Close() })
}

// reopen simulates a restart on the same state file.
func (fx *engineFixture) reopen() {
	fx.engine.Close()
	fx.open()
}

// work creates every queued pipeline that is due.
func (fx *engineFixture) work() {
	fx.t.Helper()
	if _, err := fx.engine.fireDue(context.Background(), context.Background()); err != nil {
		fx.t.Fatal(err)
	}
}

type hookOpts struct {
	ref, defaultBranch, runID string
	tag                       bool
	roots                     string // RootsVariable
	// url replaces object_attributes.url (the pipeline's page, which is
	// otherwise GitLab's URL of this project and pipeline); noURL leaves it
	// out, as GitLab before 16.1 did.
	url   string
	noURL bool
}

// pipelineHook returns the recorded GitLab Pipeline Hook payload, changed
// to describe pipeline id of project with status.
func pipelineHook(t testing.TB, project string, id int64, status string, o hookOpts) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/hooks/pipeline-success.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	json.Unmarshal(data, &ev)
	attrs := ev["object_attributes"].(map[string]any)
	proj := ev["project"].(map[string]any)
	if o.defaultBranch == "" {
		o.defaultBranch = "main"
	}
	if o.ref == "" {
		o.ref = o.defaultBranch
	}
	attrs["id"], attrs["status"], attrs["ref"], attrs["tag"] = id, status, o.ref, o.tag
	attrs["url"] = fmt.Sprintf("http://example.com/%s/-/pipelines/%d", project, id)
	if o.url != "" {
		attrs["url"] = o.url
	}
	if o.noURL {
		delete(attrs, "url")
	}
	proj["path_with_namespace"], proj["default_branch"] = project, o.defaultBranch
	if o.runID != "" {
		vars := []map[string]string{{"key": RunVariable, "value": o.runID}}
		if o.roots != "" {
			vars = append(vars, map[string]string{"key": RootsVariable, "value": o.roots})
		}
		attrs["variables"] = vars
	}
	out, _ := json.Marshal(ev)
	return out
}

func (fx *engineFixture) deliver(body []byte) *httptest.ResponseRecorder {
	fx.t.Helper()
	req := httptest.NewRequest("POST", "/hook", strings.NewReader(string(body)))
	req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
	req.Header.Set("X-Gitlab-Token", "s3cret")
	rec := httptest.NewRecorder()
	fx.recv.Handler().ServeHTTP(rec, req)
	return rec
}

func (fx *engineFixture) pipeline(project string, id int64, status string, o hookOpts) int {
	fx.t.Helper()
	return fx.deliver(pipelineHook(fx.t, project, id, status, o)).Code
}

// succeed reports the success of the pipeline the engine created for project.
func (fx *engineFixture) succeed(project string) {
	fx.t.Helper()
	p := fx.api.pipelineOf(fx.t, project)
	if code := fx.pipeline(project, p.ID, "success", hookOpts{runID: p.RunID}); code != http.StatusOK {
		fx.t.Fatalf("success of %s: HTTP %d", project, code)
	}
}

func (fx *engineFixture) onlyRun() *Run {
	fx.t.Helper()
	runs, err := fx.engine.Runs(0)
	if err != nil || len(runs) != 1 {
		fx.t.Fatalf("want exactly one run, got %d (%v)", len(runs), err)
	}
	return runs[0]
}

// baseSucceeded is a fixture of the chain base -> ruby -> app in which
// base's pipeline 31 succeeded and the engine created ruby's pipeline,
// which it returns.
func baseSucceeded(t *testing.T) (*engineFixture, createdPipeline) {
	t.Helper()
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby"))
	if code := fx.pipeline("ops/base", 31, "success", hookOpts{}); code != http.StatusOK {
		t.Fatalf("success of base: HTTP %d", code)
	}
	fx.work()
	return fx, fx.api.pipelineOf(t, "ops/ruby")
}

func wantCreated(t *testing.T, api *fakePipelines, want ...string) {
	t.Helper()
	if got := api.projects(); !slices.Equal(got, want) {
		t.Fatalf("pipelines created for %v, want %v", got, want)
	}
}

func TestChainRebuildsDownstreamInOrder(t *testing.T) {
	fx, _ := baseSucceeded(t)
	wantCreated(t, fx.api, "ops/ruby")
	fx.work()
	wantCreated(t, fx.api, "ops/ruby") // nothing more until ruby succeeded
	fx.succeed("ops/ruby")
	fx.work()
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
	if run := fx.onlyRun(); run.Status != RunRunning {
		t.Errorf("run status %s before app succeeded", run.Status)
	}
	fx.succeed("ops/app")
	run := fx.onlyRun()
	if run.Status != RunSucceeded || run.Finished == nil {
		t.Errorf("run status %s, finished %v", run.Status, run.Finished)
	}
	for _, c := range fx.api.created {
		if c.RunID != run.ID || c.Ref != "main" {
			t.Errorf("pipeline %+v: want run %s on main", c, run.ID)
		}
	}
}

func TestDiamondBuildsItsBottomOnce(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/python: ops/base", "ops/app: ops/ruby ops/python"))
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	fx.work()
	wantCreated(t, fx.api, "ops/python", "ops/ruby")
	fx.succeed("ops/ruby")
	fx.work()
	wantCreated(t, fx.api, "ops/python", "ops/ruby") // app waits for python
	fx.succeed("ops/python")
	fx.succeed("ops/python") // a duplicate delivery
	fx.work()
	wantCreated(t, fx.api, "ops/python", "ops/ruby", "ops/app")
	fx.succeed("ops/app")
	if run := fx.onlyRun(); run.Status != RunSucceeded {
		t.Errorf("run status %s", run.Status)
	}
}

func TestFailureStopsDownstreamAndALaterSuccessResumes(t *testing.T) {
	fx, ruby := baseSucceeded(t)
	fx.pipeline("ops/ruby", ruby.ID, "running", hookOpts{runID: ruby.RunID})
	fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID})
	fx.work()
	wantCreated(t, fx.api, "ops/ruby")
	run := fx.onlyRun()
	if run.Status != RunFailed || run.Steps["ops/ruby"].State != StepFailed || !strings.Contains(run.Steps["ops/ruby"].Reason, "failed") {
		t.Fatalf("after the failure: run %s, ruby %+v", run.Status, run.Steps["ops/ruby"])
	}
	// The admin fixes ruby and runs a new pipeline by hand (no variable).
	if code := fx.pipeline("ops/ruby", 77, "success", hookOpts{}); code != http.StatusOK {
		t.Fatalf("manual success: HTTP %d", code)
	}
	fx.work()
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
	fx.succeed("ops/app")
	run = fx.onlyRun()
	if run.Status != RunSucceeded {
		t.Errorf("run status %s after resume", run.Status)
	}
}

func TestRetriedPipelineContinuesItsRun(t *testing.T) {
	fx, ruby := baseSucceeded(t)
	fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID})
	// Retrying the failed jobs keeps the pipeline id.
	fx.pipeline("ops/ruby", ruby.ID, "running", hookOpts{runID: ruby.RunID})
	fx.succeed("ops/ruby")
	fx.work()
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
}

func TestIgnoredPipelineEvents(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	cases := []struct {
		name   string
		body   []byte
		reason string
	}{
		{"feature branch", pipelineHook(t, "ops/base", 40, "success", hookOpts{ref: "feature"}), ""},
		{"tag", pipelineHook(t, "ops/base", 41, "success", hookOpts{ref: "main", tag: true}), ""},
		{"running on main", pipelineHook(t, "ops/base", 42, "running", hookOpts{}), ""},
		{"failed on main", pipelineHook(t, "ops/base", 43, "failed", hookOpts{}), ""},
		{"leaf project", pipelineHook(t, "ops/ruby", 44, "success", hookOpts{}), ""},
		{"unknown project", pipelineHook(t, "other/thing", 45, "success", hookOpts{}), ""},
	}
	for _, tc := range cases {
		if rec := fx.deliver(tc.body); rec.Code != http.StatusNoContent {
			t.Errorf("%s: HTTP %d, want 204", tc.name, rec.Code)
		}
	}
	fx.work()
	wantCreated(t, fx.api)
	if runs, _ := fx.engine.Runs(0); len(runs) != 0 {
		t.Errorf("%d runs started by ignored events", len(runs))
	}
}

func TestEnginePipelinesNeverStartNewRuns(t *testing.T) {
	fx, ruby := baseSucceeded(t)
	// Without the variable, known by its id alone.
	fx.pipeline("ops/ruby", ruby.ID, "success", hookOpts{})
	fx.work()
	fx.onlyRun()
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
}

func TestOutOfOrderDeliveryDoesNotRegress(t *testing.T) {
	fx, ruby := baseSucceeded(t)
	fx.succeed("ops/ruby")
	fx.pipeline("ops/ruby", ruby.ID, "pending", hookOpts{runID: ruby.RunID})
	fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID})
	run := fx.onlyRun()
	if s := run.Steps["ops/ruby"]; s.State != StepSucceeded {
		t.Errorf("ruby went back to %s", s.State)
	}
	fx.work()
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
}

func TestWebhookBeforeTheTriggerIsRecorded(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby"))
	var runID string
	fx.engine.crash = func(point string) {
		if point == "created" && runID == "" {
			// GitLab's webhook for the new pipeline overtakes the
			// engine's own record of it.
			p := fx.api.created[len(fx.api.created)-1]
			runID = p.RunID
			fx.pipeline(p.Project, p.ID, "success", hookOpts{runID: p.RunID})
		}
	}
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	fx.work()
	fx.work()
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
	if run := fx.onlyRun(); run.Steps["ops/ruby"].State != StepSucceeded {
		t.Errorf("ruby is %s", run.Steps["ops/ruby"].State)
	}
}

func TestRestartAfterTheAPICallFindsThePipeline(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby"))
	crashed := errors.New("crash")
	fx.engine.crash = func(point string) {
		if point == "created" {
			panic(crashed) // the process dies before recording the pipeline
		}
	}
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	func() {
		defer func() {
			if r := recover(); r != crashed {
				t.Fatalf("recovered %v", r)
			}
		}()
		fx.work()
	}()
	wantCreated(t, fx.api, "ops/ruby")
	fx.reopen()
	fx.work()
	wantCreated(t, fx.api, "ops/ruby") // found, not created again
	if fx.api.finds != 1 {
		t.Errorf("%d look-ups, want 1", fx.api.finds)
	}
	run := fx.onlyRun()
	if s := run.Steps["ops/ruby"]; s.State != StepTriggered || s.PipelineID != fx.api.pipelineOf(t, "ops/ruby").ID {
		t.Errorf("ruby after restart: %+v", s)
	}
}

func TestRestartBeforeTheAPICallCreatesThePipeline(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	crashed := errors.New("crash")
	fx.engine.crash = func(point string) {
		if point == "attempted" {
			panic(crashed)
		}
	}
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	func() {
		defer func() { recover() }()
		fx.work()
	}()
	wantCreated(t, fx.api)
	fx.reopen()
	fx.work()
	wantCreated(t, fx.api, "ops/ruby")
}

func TestAPIErrorsRetryOrFailTheStep(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/python: ops/base"))
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	fx.engine.now = func() time.Time { return now }
	fx.api.failNext["ops/ruby"] = []error{&APIError{Op: "create", Status: 502}}
	fx.api.failNext["ops/python"] = []error{&APIError{Op: "create", Status: 403, Hint: "needs api scope"}}
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	next, err := fx.engine.fireDue(context.Background(), context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(2 * time.Second); !next.Equal(want) {
		t.Errorf("next try at %v, want %v", next, want)
	}
	wantCreated(t, fx.api)
	run := fx.onlyRun()
	if s := run.Steps["ops/python"]; s.State != StepFailed || !strings.Contains(s.Reason, "403") {
		t.Errorf("python after a 403: %+v", s)
	}
	fx.work() // not due yet
	wantCreated(t, fx.api)
	now = now.Add(3 * time.Second)
	fx.work()
	wantCreated(t, fx.api, "ops/ruby")
	if fx.api.finds != 1 {
		t.Errorf("the retry after a 502 did not look for a pipeline first (%d look-ups)", fx.api.finds)
	}
}

func TestStartRunTriggersTheRoots(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	run, err := fx.engine.StartRun([]string{"ops/base"}, "", "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	fx.work()
	wantCreated(t, fx.api, "ops/base")
	fx.succeed("ops/base")
	fx.work()
	wantCreated(t, fx.api, "ops/base", "ops/ruby")
	if got := fx.onlyRun(); got.ID != run.ID {
		t.Errorf("run %s, want %s", got.ID, run.ID)
	}
	if _, err := fx.engine.StartRun([]string{"ops/nope"}, "", "admin", ""); err == nil {
		t.Error("a run at an unknown project started")
	}
}

func TestReceiverHTTPRules(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	h := fx.recv.Handler()
	body := string(pipelineHook(t, "ops/base", 31, "success", hookOpts{}))
	cases := []struct {
		name, event, token, body string
		want                     int
	}{
		{"no token", "Pipeline Hook", "", body, 401},
		{"wrong token", "Pipeline Hook", "s3cret!", body, 401},
		{"not JSON", "Pipeline Hook", "s3cret", "{not json", 400},
		{"too large", "Pipeline Hook", "s3cret", `{"x":"` + strings.Repeat("a", MaxHookBody) + `"}`, 413},
		{"not a pipeline event", "Pipeline Hook", "s3cret", `{"object_kind":"push"}`, 400},
		{"other event", "Issue Hook", "s3cret", `{"object_kind":"issue"}`, 204},
		{"push without dependency change", "Push Hook", "s3cret", `{"object_kind":"push","ref":"refs/heads/main","project":{"id":2,"path_with_namespace":"ops/ruby","default_branch":"main"},"commits":[{"modified":["README.md"]}]}`, 204},
		{"pipeline", "Pipeline Hook", "s3cret", body, 200},
	}
	for _, tc := range cases {
		req := httptest.NewRequest("POST", "/hook", strings.NewReader(tc.body))
		req.Header.Set("X-Gitlab-Event", tc.event)
		if tc.token != "" {
			req.Header.Set("X-Gitlab-Token", tc.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: HTTP %d, want %d (%s)", tc.name, rec.Code, tc.want, rec.Body)
		}
	}
	var rescanned []string
	fx.recv.DepsChanged = func(p string) { rescanned = append(rescanned, p) }
	req := httptest.NewRequest("POST", "/hook", strings.NewReader(`{"object_kind":"push","ref":"refs/heads/main","project":{"id":2,"path_with_namespace":"ops/ruby","default_branch":"main"},"commits":[{"modified":["Containerfile"]}]}`))
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", "s3cret")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted || !slices.Equal(rescanned, []string{"ops/ruby"}) {
		t.Errorf("push changing the Containerfile: HTTP %d, rescans %v", rec.Code, rescanned)
	}
	for path, want := range map[string]int{"/runs": 200, "/healthz": 200, "/runs/nope": 404} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: HTTP %d, want %d", path, rec.Code, want)
		}
	}
	run := fx.onlyRun()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/runs/"+run.ID, nil))
	var got Run
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.ID != run.ID || got.Steps["ops/ruby"].State != StepQueued {
		t.Errorf("GET /runs/%s: %v %s", run.ID, err, rec.Body)
	}
	_ = fmt.Sprint()
}

func TestLateRunningAfterAFailureKeepsTheRunResumable(t *testing.T) {
	fx, ruby := baseSucceeded(t)
	fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID})
	// GitLab's "running" delivery of the same pipeline arrives late.
	fx.pipeline("ops/ruby", ruby.ID, "running", hookOpts{runID: ruby.RunID})
	run := fx.onlyRun()
	if s := run.Steps["ops/ruby"]; s.State != StepFailed || run.Status != RunFailed {
		t.Fatalf("after a late running: run %s, ruby %s", run.Status, s.State)
	}
	// The admin fixes ruby and runs a new pipeline by hand: the run resumes.
	if code := fx.pipeline("ops/ruby", 77, "success", hookOpts{}); code != http.StatusOK {
		t.Fatalf("manual success: HTTP %d", code)
	}
	fx.work()
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
	if run := fx.onlyRun(); run.Steps["ops/ruby"].State != StepSucceeded {
		t.Errorf("ruby %s after the resume", run.Steps["ops/ruby"].State)
	}
}

func TestOnlyRunIDsOfOpsctlsFormAreAdopted(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	const good = "20261126-101500-a1b2c3d4"
	if code := fx.pipeline("ops/base", 30, "success", hookOpts{runID: good}); code != http.StatusOK {
		t.Fatalf("success carrying %s: HTTP %d", good, code)
	}
	if run, err := fx.engine.Run(good); err != nil || run == nil {
		t.Fatalf("the run id %s of a trigger was not adopted", good)
	}
	for i, bad := range []string{"zzz", "x/../y", "a\x00ops/ruby", good + "0", strings.Repeat("9", 4096)} {
		id := int64(40 + i)
		if code := fx.pipeline("ops/base", id, "success", hookOpts{runID: bad}); code != http.StatusOK {
			t.Fatalf("success carrying %q: HTTP %d", bad, code)
		}
		if run, _ := fx.engine.Run(bad); run != nil {
			t.Errorf("run id %q adopted from a pipeline variable", bad)
		}
	}
	runs, _ := fx.engine.Runs(0)
	for _, r := range runs {
		if !regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$`).MatchString(r.ID) {
			t.Errorf("run id %q in the state", r.ID)
		}
	}
	req := httptest.NewRequest("POST", "/runs", strings.NewReader(`{"project":"ops/base","run_id":"zzz"}`))
	req.Header.Set("X-Gitlab-Token", "s3cret")
	rec := httptest.NewRecorder()
	fx.recv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "run id") {
		t.Errorf("POST /runs with run_id zzz: HTTP %d %s, want 400 naming the run id", rec.Code, rec.Body)
	}
}

// bbolt's Batch may run a decision more than once and roll it back: the
// decision's metrics count only what was committed.
func TestRolledBackDecisionObservesNoMetric(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	reg := prometheus.NewRegistry()
	fx.engine.metrics = NewMetrics(reg)
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	fx.work()
	ruby := fx.api.pipelineOf(t, "ops/ruby")
	u := PipelineUpdate{Project: "ops/ruby", DefaultBranch: "main", Ref: "main", PipelineID: ruby.ID, Status: "success", RunID: ruby.RunID}
	errRollback := errors.New("rolled back")
	for range 2 {
		err := fx.engine.db.Update(func(tx *bolt.Tx) error {
			if _, err := fx.engine.apply(tx, u); err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	}
	runDurations := func() uint64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "opsctl_chain_run_duration_seconds" {
				return mf.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		return 0
	}
	if n := runDurations(); n != 0 {
		t.Errorf("%d run durations observed by rolled-back decisions", n)
	}
	if _, err := fx.engine.HandlePipeline(u); err != nil {
		t.Fatal(err)
	}
	if n := runDurations(); n != 1 {
		t.Errorf("%d run durations observed for one finished run, want 1", n)
	}
}

// A child pipeline (trigger: include) of a project sends its own Pipeline
// Hook, on the same project and ref: its parent speaks for the project.
func TestChildPipelinesStartNoRunAndMoveNoStep(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby"))
	child := func(project string, id int64, status, runID string) int {
		var ev map[string]any
		json.Unmarshal(pipelineHook(t, project, id, status, hookOpts{runID: runID}), &ev)
		ev["object_attributes"].(map[string]any)["source"] = "parent_pipeline"
		body, _ := json.Marshal(ev)
		return fx.deliver(body).Code
	}
	if code := child("ops/base", 30, "success", ""); code != http.StatusNoContent {
		t.Errorf("child pipeline of base: HTTP %d, want 204", code)
	}
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	fx.work()
	ruby := fx.api.pipelineOf(t, "ops/ruby")
	// Children of the pipeline the engine created, with and without the
	// run's variable forwarded.
	child("ops/ruby", 500, "success", "")
	child("ops/ruby", 501, "success", ruby.RunID)
	fx.work()
	run := fx.onlyRun()
	if s := run.Steps["ops/ruby"]; s.State != StepTriggered || s.PipelineID != ruby.ID {
		t.Errorf("ruby %s with pipeline %d after its children, want triggered with %d", s.State, s.PipelineID, ruby.ID)
	}
	wantCreated(t, fx.api, "ops/ruby")
	fx.succeed("ops/ruby")
	fx.work()
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
	fx.onlyRun()
}

// Once a project succeeded in a later run, that run rebuilds its
// downstream: an older run in which it failed is not resumed by its next
// success, which starts a run on the current graph.
func TestAFailureSupersededByALaterRunIsNotResumed(t *testing.T) {
	fx, first := baseSucceeded(t)
	fx.pipeline("ops/ruby", first.ID, "failed", hookOpts{runID: first.RunID})
	// The next night's run rebuilds ruby and app.
	fx.pipeline("ops/base", 32, "success", hookOpts{})
	fx.work()
	fx.succeed("ops/ruby")
	fx.work()
	fx.succeed("ops/app")
	wantCreated(t, fx.api, "ops/ruby", "ops/ruby", "ops/app")
	// A project is added below ruby; later a push to ruby succeeds.
	fx.engine.SetPlanner(testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby", "ops/tool: ops/ruby"))
	if code := fx.pipeline("ops/ruby", 77, "success", hookOpts{}); code != http.StatusOK {
		t.Fatalf("push pipeline of ruby: HTTP %d", code)
	}
	fx.work()
	wantCreated(t, fx.api, "ops/ruby", "ops/ruby", "ops/app", "ops/app", "ops/tool")
	if run, _ := fx.engine.Run(first.RunID); run.Status != RunFailed {
		t.Errorf("the superseded run is %s", run.Status)
	}
}

func TestUnwritableStateAnswers503(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	fx.engine.Close() // the receiver has no logger: the zero value logs nowhere
	if code := fx.pipeline("ops/base", 31, "success", hookOpts{}); code != http.StatusServiceUnavailable {
		t.Errorf("pipeline event on a closed state: HTTP %d, want 503", code)
	}
}

// Only a success after the failure supersedes it: a run in which the
// project had succeeded earlier does not, however often it is saved later.
func TestAnEarlierSuccessDoesNotSupersedeALaterFailure(t *testing.T) {
	fx, _ := baseSucceeded(t)
	fx.succeed("ops/ruby")
	fx.work()
	app := fx.api.pipelineOf(t, "ops/app") // app of the first run still building
	fx.pipeline("ops/base", 32, "success", hookOpts{})
	fx.work()
	second := fx.api.pipelineOf(t, "ops/ruby")
	fx.pipeline("ops/ruby", second.ID, "failed", hookOpts{runID: second.RunID})
	fx.pipeline("ops/app", app.ID, "success", hookOpts{runID: app.RunID})
	// The fixed ruby succeeds by hand: the second run continues.
	fx.pipeline("ops/ruby", 77, "success", hookOpts{})
	fx.work()
	if runs, _ := fx.engine.Runs(0); len(runs) != 2 {
		t.Fatalf("%d runs, want the two started by base", len(runs))
	}
	if run, _ := fx.engine.Run(second.RunID); run.Steps["ops/ruby"].State != StepSucceeded || run.Steps["ops/app"].State != StepTriggered {
		t.Errorf("second run not resumed: %+v", run.Steps)
	}
}

func TestEventLabelIsTheHeaderForGitLabsEventsOnly(t *testing.T) {
	for event, want := range map[string]string{
		"Pipeline Hook":              "Pipeline Hook",
		"Emoji Hook":                 "Emoji Hook",
		"Resource Access Token Hook": "Resource Access Token Hook",
		"System Hook":                "System Hook",
		"pipeline hook":              "other", // GitLab's spelling only
		"":                           "other",
		"Pipeline Hook\x00x":         "other",
	} {
		if got := eventLabel(event); got != want {
			t.Errorf("eventLabel(%q) = %q, want %q", event, got, want)
		}
	}
}

// blockingPipelines holds CreatePipeline until released, or until the
// call's context ends, as an HTTP client would: a call whose context has
// ended by the time it is released fails too, whichever came first.
type blockingPipelines struct {
	*fakePipelines
	entered, release chan struct{}
}

func (b *blockingPipelines) CreatePipeline(ctx context.Context, project string, t Target, runID string, roots []string) (CreatedPipeline, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
		if err := ctx.Err(); err != nil {
			return CreatedPipeline{}, err
		}
		return b.fakePipelines.CreatePipeline(ctx, project, t, runID, roots)
	case <-ctx.Done():
		return CreatedPipeline{}, ctx.Err()
	}
}

// workBlockedOnCreate runs Work on a chain base -> ruby after base
// succeeded, and returns once ruby's pipeline creation is under way (held
// by api until released); stop ends Work's context.
func workBlockedOnCreate(t *testing.T) (fx *engineFixture, api *blockingPipelines, stop context.CancelFunc, worked chan error) {
	t.Helper()
	fx = newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	api = &blockingPipelines{fakePipelines: fx.api, entered: make(chan struct{}, 1), release: make(chan struct{})}
	fx.engine.api = api
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	worked = make(chan error, 1)
	go func() { worked <- fx.engine.Work(ctx) }()
	<-api.entered
	return fx, api, stop, worked
}

func TestStopLetsThePipelineCreationUnderWayFinish(t *testing.T) {
	fx, api, stop, worked := workBlockedOnCreate(t)
	stop() // SIGTERM while GitLab is creating ruby's pipeline
	time.Sleep(50 * time.Millisecond)
	close(api.release)
	select {
	case err := <-worked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Work did not return after the stop")
	}
	wantCreated(t, fx.api, "ops/ruby")
	if s := fx.onlyRun().Steps["ops/ruby"]; s.State != StepTriggered || s.PipelineID == 0 {
		t.Errorf("ruby after the stop: %+v, want triggered with its pipeline recorded", s)
	}
}

func TestStopGivesUpACreationAfterTheGrace(t *testing.T) {
	defer func(d time.Duration) { shutdownGrace = d }(shutdownGrace)
	shutdownGrace = 100 * time.Millisecond
	fx, _, stop, worked := workBlockedOnCreate(t)
	stopped := time.Now()
	stop()
	select {
	case err := <-worked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Work waited past the grace for a creation that never ends")
	}
	if waited := time.Since(stopped); waited < shutdownGrace {
		t.Errorf("Work returned %v after the stop, before the %v grace", waited, shutdownGrace)
	}
	// Not created, still to do: the next start creates (or finds) it.
	wantCreated(t, fx.api)
	fx.reopen()
	fx.work()
	wantCreated(t, fx.api, "ops/ruby")
}

// GitLab does not deliver a webhook again when the receiver was down: a
// pipeline of a run that ended meanwhile is asked for its status when the
// receiver starts, and the run goes on.
func TestRestartLearnsTheOutcomeOfPipelinesWhoseWebhookWasMissed(t *testing.T) {
	fx, _ := baseSucceeded(t)
	wantCreated(t, fx.api, "ops/ruby")
	// The receiver is down while ruby's pipeline succeeds.
	fx.reopen()
	fx.api.setStatus(fx.api.pipelineOf(t, "ops/ruby").ID, "success")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	worked := make(chan error, 1)
	go func() { worked <- fx.engine.Work(ctx) }()
	testenv.WaitUntil(t, 5*time.Second, func() bool { return len(fx.api.projects()) >= 2 })
	stop()
	if err := <-worked; err != nil {
		t.Fatal(err)
	}
	wantCreated(t, fx.api, "ops/ruby", "ops/app")
	if s := fx.onlyRun().Steps["ops/ruby"]; s.State != StepSucceeded {
		t.Errorf("ruby after the restart: %+v, want succeeded", s)
	}
}

// A run with several roots started without the receiver (`chain watch
// --once` after debian changed, used by base and by tools, which also
// builds on base): the starter created only base's pipeline, since tools
// waits for base. The receiver that adopts the run builds tools after base,
// then app.
func TestAdoptedRunWithARootBelowAnotherRootBuildsIt(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/tools: ops/base", "ops/app: ops/tools"))
	runID := fx.adoptRun(t, "ops/base,ops/tools")
	fx.work()
	wantCreated(t, fx.api, "ops/tools")
	fx.succeed("ops/tools")
	fx.work()
	wantCreated(t, fx.api, "ops/tools", "ops/app")
	fx.succeed("ops/app")
	if run := fx.onlyRun(); run.ID != runID || run.Status != RunSucceeded {
		t.Errorf("run %s %s, want %s succeeded", run.ID, run.Status, runID)
	}
}

// While GitLab is down, the look at the pipelines of unfinished runs stops
// at the first failure instead of waiting for every one in turn before the
// queued pipelines are created.
func TestPollingStopsAtTheFirstTemporaryError(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/python: ops/base"))
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	fx.work()
	wantCreated(t, fx.api, "ops/python", "ops/ruby")
	fx.api.statusCalls = 0
	if err := fx.engine.pollUnfinished(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fx.api.statusCalls != 1 {
		t.Errorf("%d status calls while GitLab fails, want 1", fx.api.statusCalls)
	}
}

// `chain trigger PROJECT --ref REF` without --server or --follow creates
// PROJECT's pipeline on REF carrying the run id, and "a receiver continues
// the run when it succeeds" (docs/chain.md), as it does on the default
// branch. Without a run id of opsctl's form, such a success starts nothing.
func TestTriggerOnAnotherRefIsContinuedByTheReceiver(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	runID := NewRunID(time.Now())
	if code := fx.pipeline("ops/base", 31, "success", hookOpts{ref: "v2", runID: runID}); code != http.StatusOK {
		t.Fatalf("success of the triggered pipeline on v2: HTTP %d, want 200", code)
	}
	fx.work()
	wantCreated(t, fx.api, "ops/ruby")
	if run := fx.onlyRun(); run.ID != runID {
		t.Errorf("run %s, want the trigger's %s", run.ID, runID)
	}
	if code := fx.pipeline("ops/base", 33, "success", hookOpts{ref: "feature", runID: "20261126-101500-zzzzzzzz"}); code != http.StatusNoContent {
		t.Errorf("a success on a feature branch without a run id of opsctl's: HTTP %d, want 204", code)
	}
}

// A state file held by another opsctl (a `chain watch --once` timer that
// overlaps the previous one) is a temporary failure, exit 75: a retry
// later succeeds.
func TestStateHeldByAnotherProcessIsTemporary(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:"))
	_, err := OpenReadOnly(fx.path)
	var temp interface{ Temporary() bool }
	if err == nil || !errors.As(err, &temp) || !temp.Temporary() {
		t.Errorf("OpenReadOnly of a held state file: %v, want a temporary error", err)
	}
	_, err = NewEngine(EngineOptions{StatePath: fx.path})
	if err == nil || !errors.As(err, &temp) || !temp.Temporary() {
		t.Errorf("NewEngine on a held state file: %v, want a temporary error", err)
	}
}

// polledOtherRoot adopts a run with the roots base and tools from base's
// pipeline; the starter created tools' pipeline 77, which has status and
// whose webhook never came; then the engine polls the unfinished runs.
func polledOtherRoot(t *testing.T, status string) *engineFixture {
	t.Helper()
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/tools:", "ops/app: ops/base ops/tools"))
	runID := fx.adoptRun(t, "ops/base,ops/tools")
	fx.api.created = append(fx.api.created, createdPipeline{Project: "ops/tools", Ref: "main", RunID: runID, ID: 77})
	fx.api.setStatus(77, status)
	if err := fx.engine.pollUnfinished(context.Background()); err != nil {
		t.Fatal(err)
	}
	return fx
}

// The other root of a run adopted from a pipeline (`chain watch --once`
// created both roots' pipelines) has no pipeline id in the state: when its
// webhook was missed, the poll finds its pipeline by the run id.
func TestPollFindsTheOtherRootsPipelineOfAnAdoptedRun(t *testing.T) {
	fx := polledOtherRoot(t, "success")
	fx.work()
	wantCreated(t, fx.api, "ops/tools", "ops/app")
	if s := fx.onlyRun().Steps["ops/tools"]; s.State != StepSucceeded || s.PipelineID != 77 {
		t.Errorf("tools after the poll: %+v, want succeeded with pipeline 77", s)
	}
}

// GitLab's Push Hook lists at most 20 commits (total_commits_count tells
// how many were pushed): a bigger push to the default branch may have
// changed a dependency file in a commit it does not list.
func TestABigPushRescans(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	var rescanned []string
	fx.recv.DepsChanged = func(p string) { rescanned = append(rescanned, p) }
	commits := strings.TrimSuffix(strings.Repeat(`{"modified":["README.md"]},`, 20), ",")
	body := `{"object_kind":"push","ref":"refs/heads/main","project":{"id":2,"path_with_namespace":"ops/ruby","default_branch":"main"},"total_commits_count":35,"commits":[` + commits + `]}`
	req := httptest.NewRequest("POST", "/hook", strings.NewReader(body))
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	req.Header.Set("X-Gitlab-Token", "s3cret")
	rec := httptest.NewRecorder()
	fx.recv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted || !slices.Equal(rescanned, []string{"ops/ruby"}) {
		t.Errorf("push of 35 commits, 20 listed: HTTP %d, rescans %v; want 202 and a rescan", rec.Code, rescanned)
	}
}

// A pipeline deleted in GitLab while its run waited (GitLab sends no
// webhook for a deletion) ends the step as failed at the next poll: the run
// must not wait for ever, and a later success of the project resumes it.
func TestPollEndsTheStepOfADeletedPipeline(t *testing.T) {
	fx, _ := baseSucceeded(t)
	wantCreated(t, fx.api, "ops/ruby")
	fx.api.setStatus(fx.api.pipelineOf(t, "ops/ruby").ID, statusDeleted)
	if err := fx.engine.pollUnfinished(context.Background()); err != nil {
		t.Fatal(err)
	}
	run := fx.onlyRun()
	if s := run.Steps["ops/ruby"]; s.State != StepFailed || !strings.Contains(s.Reason, "not found in GitLab") {
		t.Errorf("ruby after its pipeline was deleted: %+v, want failed, not found in GitLab", s)
	}
	if run.Status != RunFailed {
		t.Errorf("run %s, want failed", run.Status)
	}
	wantCreated(t, fx.api, "ops/ruby")
}

// adoptRun delivers the success of ops/base's pipeline 31 carrying a new
// run id and the roots (comma-separated) of a run started outside the
// receiver (`chain watch --once`), and returns the run id.
func (fx *engineFixture) adoptRun(t *testing.T, roots string) string {
	t.Helper()
	runID := NewRunID(time.Now())
	if code := fx.pipeline("ops/base", 31, "success", hookOpts{runID: runID, roots: roots}); code != http.StatusOK {
		t.Fatalf("success of base: HTTP %d", code)
	}
	return runID
}

// A pipeline the poll finds by the run id while it still runs is recorded:
// later polls ask for its status alone instead of listing the project's
// pipelines and their variables again.
func TestPollRecordsARunningPipelineItFoundByTheRunID(t *testing.T) {
	fx := polledOtherRoot(t, "running")
	if s := fx.onlyRun().Steps["ops/tools"]; s.PipelineID != 77 || s.State == StepSucceeded {
		t.Errorf("tools after the poll: %+v, want pipeline 77 recorded, not succeeded", s)
	}
}
