package chain

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// depsSource is a group of projects whose .gitlab-deps name their
// upstreams, given as "project: upstream..." lines; projects may be added
// while a Server runs, and the listing may fail.
type depsSource struct {
	mu       sync.Mutex
	projects []ProjectRef
	deps     map[string]string
	failWith error // ListProjects fails with it while set
}

func newDepsSource(lines ...string) *depsSource {
	s := &depsSource{deps: map[string]string{}}
	s.add(lines...)
	return s
}

func (s *depsSource) add(lines ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range lines {
		name, ups, _ := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		s.projects = append(s.projects, ProjectRef{Path: name, ID: int64(len(s.projects) + 1), DefaultBranch: "main"})
		s.deps[name] = strings.Join(strings.Fields(ups), "\n") + "\n"
	}
}

func (s *depsSource) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failWith = err
}

func (s *depsSource) ListProjects(ctx context.Context) ([]ProjectRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWith != nil {
		return nil, s.failWith
	}
	return slices.Clone(s.projects), nil
}

func (s *depsSource) ReadFile(ctx context.Context, p ProjectRef, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != DepsFileName {
		return nil, fs.ErrNotExist
	}
	return []byte(s.deps[p.Path]), nil
}

func (s *depsSource) scanner() Scanner {
	return Scanner{Source: s, Registries: AnyRegistry(), Concurrency: 1}
}

// runningServer is a Server of fx's engine on a free port, running until
// the test stops it (stop) or ends.
type runningServer struct {
	url  string
	stop context.CancelFunc
	done chan error
}

func startServer(t *testing.T, s *Server) *runningServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	rs := &runningServer{url: "http://" + ln.Addr().String(), stop: stop, done: make(chan error, 1)}
	go func() { rs.done <- s.Run(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		<-rs.done
	})
	healthy := func() bool {
		resp, err := http.Get(rs.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if !testenv.WaitUntil(t, 10*time.Second, healthy) {
		t.Fatal("the server did not answer /healthz")
	}
	return rs
}

// wait is what Run returned after stop.
func (rs *runningServer) wait(t *testing.T) error {
	t.Helper()
	rs.stop()
	select {
	case err := <-rs.done:
		rs.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

func (rs *runningServer) post(t *testing.T, event string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest("POST", rs.url+"/hook", strings.NewReader(string(body)))
	req.Header.Set("X-Gitlab-Event", event)
	req.Header.Set("X-Gitlab-Token", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServerRunsTheChainThenStopsInOrder(t *testing.T) {
	fx := newEngineFixture(t, nil)
	source := newDepsSource("ops/base:", "ops/ruby: ops/base")
	rs := startServer(t, &Server{Engine: fx.engine, Scanner: source.scanner(), Secret: "s3cret"})
	if code := rs.post(t, "Pipeline Hook", pipelineHook(t, "ops/base", 31, "success", hookOpts{})); code != http.StatusOK {
		t.Fatalf("success of base: HTTP %d", code)
	}
	if !testenv.WaitUntil(t, 10*time.Second, func() bool { return len(fx.api.projects()) == 1 }) {
		t.Fatalf("Work did not create ruby's pipeline: %v", fx.api.projects())
	}
	wantCreated(t, fx.api, "ops/ruby")
	if err := rs.wait(t); err != nil {
		t.Fatalf("Run after the stop: %v", err)
	}
	if _, err := http.Get(rs.url + "/healthz"); err == nil {
		t.Error("the server still answers after Run returned")
	}
	if _, err := fx.engine.Run("x"); err == nil {
		t.Error("the state file is still open after Run returned")
	}
}

// Stopped while GitLab creates a pipeline, Run lets the creation finish
// within the engine's grace and records it before it closes the state
// file: a restart finds the pipeline recorded, with nothing to reconcile.
func TestServerStopRecordsTheCreationUnderWayBeforeClosing(t *testing.T) {
	fx := newEngineFixture(t, nil)
	api := &blockingPipelines{fakePipelines: fx.api, entered: make(chan struct{}, 1), release: make(chan struct{})}
	fx.engine.api = api
	source := newDepsSource("ops/base:", "ops/ruby: ops/base")
	rs := startServer(t, &Server{Engine: fx.engine, Scanner: source.scanner(), Secret: "s3cret"})
	rs.post(t, "Pipeline Hook", pipelineHook(t, "ops/base", 31, "success", hookOpts{}))
	<-api.entered // ruby's pipeline is being created
	rs.stop()
	// GitLab answers once the receiver has stopped taking requests.
	down := func() bool {
		_, err := http.Get(rs.url + "/healthz")
		return err != nil
	}
	if !testenv.WaitUntil(t, 10*time.Second, down) {
		t.Fatal("the receiver still answers after the stop")
	}
	close(api.release)
	if err := rs.wait(t); err != nil {
		t.Fatalf("Run after the stop: %v", err)
	}
	fx.open()
	if s := fx.onlyRun().Steps["ops/ruby"]; s.State != StepTriggered || s.PipelineID == 0 {
		t.Errorf("ruby after the stop: %+v, want triggered with its pipeline recorded", s)
	}
}

func TestServerRescansAfterAPushChangingADependencyFile(t *testing.T) {
	defer func(d time.Duration) { pushSettle = d }(pushSettle)
	pushSettle = 10 * time.Millisecond
	fx := newEngineFixture(t, nil)
	source := newDepsSource("ops/base:", "ops/ruby: ops/base")
	rs := startServer(t, &Server{Engine: fx.engine, Scanner: source.scanner(), Secret: "s3cret"})
	source.add("ops/app: ops/ruby")
	push := `{"object_kind":"push","ref":"refs/heads/main","project":{"id":2,"path_with_namespace":"ops/ruby","default_branch":"main"},"commits":[{"modified":[".gitlab-deps"]}]}`
	if code := rs.post(t, "Push Hook", []byte(push)); code != http.StatusAccepted {
		t.Fatalf("push changing .gitlab-deps: HTTP %d", code)
	}
	hasApp := func() bool {
		planner, ok := fx.engine.Planner().(*GraphPlanner)
		return ok && planner.Graph.Project("ops/app") != nil
	}
	if !testenv.WaitUntil(t, 10*time.Second, hasApp) {
		t.Fatal("the graph was not scanned again after the push")
	}
}

func TestServerFirstScanFailureEndsRunAtOnce(t *testing.T) {
	fx := newEngineFixture(t, nil)
	source := newDepsSource("ops/base:")
	source.fail(&networkError{op: "list projects of group ops", err: errors.New("connection refused")})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = (&Server{Engine: fx.engine, Scanner: source.scanner()}).Run(context.Background(), ln)
	var first *FirstScanError
	if !errors.As(err, &first) || !strings.HasPrefix(err.Error(), "first scan: list projects of group ops: GitLab not reached") {
		t.Fatalf("Run with a source that fails: %v, want a *FirstScanError", err)
	}
	if _, err := fx.engine.Run("x"); err == nil {
		t.Error("the state file is still open after Run returned")
	}
}

// A run the receiver drives is followed with the loop of Engine.Follow:
// every answer goes to progress, the first being the run as it started,
// until the run ends.
func TestClientFollowFollowsTheReceiversRunToItsEnd(t *testing.T) {
	for _, fails := range []bool{false, true} {
		t.Run(fmt.Sprintf("fails=%v", fails), func(t *testing.T) {
			fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
			srv := httptest.NewServer(fx.recv.Handler())
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			client := &Client{URL: u, Secret: "s3cret"}
			run, err := client.StartRun(context.Background(), StartRunRequest{Project: "ops/base"})
			if err != nil {
				t.Fatal(err)
			}
			var seen []string
			// The receiver's side: its Work and GitLab's webhooks, one
			// step a round.
			drive := func(r *Run) {
				seen = append(seen, r.Summary())
				fx.work()
				for _, p := range fx.api.projects() {
					if fx.onlyRun().Steps[p].State == StepTriggered {
						status := "success"
						if fails && p == "ops/ruby" {
							status = "failed"
						}
						fx.pipeline(p, fx.api.pipelineOf(t, p).ID, status, hookOpts{runID: run.ID})
					}
				}
			}
			got, err := client.Follow(context.Background(), run, time.Millisecond, drive)
			var failed *RunFailedError
			switch {
			case !fails && (err != nil || got.Status != RunSucceeded):
				t.Fatalf("Follow: %v, run %+v; want it succeeded", err, got)
			case fails && (!errors.As(err, &failed) || got.Status != RunFailed || !strings.Contains(err.Error(), "ops/ruby failed")):
				t.Fatalf("Follow: %v, run %+v; want a *RunFailedError naming ruby", err, got)
			}
			if len(seen) < 3 || seen[0] != run.Summary() {
				t.Errorf("progress saw %q, want the run as it started first, then each answer", seen)
			}
		})
	}
}
