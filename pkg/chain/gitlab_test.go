package chain

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/opsctl/opsctl/internal/fakegitlab"
)

const testToken = "glpat-test-secret-0123456789"

func newFake(t testing.TB) *fakegitlab.Server {
	t.Helper()
	fake := fakegitlab.New()
	t.Cleanup(fake.Close)
	fake.AddToken(testToken, "api")
	return fake
}

func newTestGitLab(t testing.TB, fake *fakegitlab.Server, token string) *GitLab {
	t.Helper()
	api, err := NewGitLab(GitLabConfig{URL: fake.URL(), Token: token, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func scanGitLab(t testing.TB, api *GitLab, group string, concurrency int) (*Graph, error) {
	t.Helper()
	s := &Scanner{Source: &GitLabSource{API: api, Group: group}, Registries: NewRegistries("registry.example.com"), Concurrency: concurrency}
	return s.Scan(context.Background())
}

func TestGitLabScanReadsGroupAndSubgroupsSkippingArchived(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/base", Files: map[string]string{"Containerfile": "FROM debian:bookworm\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/lang/ruby", DefaultBranch: "master", Files: map[string]string{"Dockerfile": "FROM registry.example.com/img/base\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/apps/deep/app", Files: map[string]string{".gitlab-deps": "img/lang/ruby # runtime\n", "Containerfile": "FROM alpine\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/old", Archived: true, Files: map[string]string{"Containerfile": "FROM debian\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/empty", Empty: true})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "other/x", Files: map[string]string{"Containerfile": "FROM debian\n"}})
	// Shared with img, but not a project of it.
	fake.ShareProject("other/x", "img")
	// Enough filler projects for three pages of 100.
	for i := range 230 {
		fake.AddProject(fakegitlab.ProjectSpec{Path: fmt.Sprintf("img/fill/p%03d", i)})
	}
	g, err := scanGitLab(t, newTestGitLab(t, fake, testToken), "img", 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Projects) != 234 {
		t.Errorf("%d projects, want 234 (archived and other groups left out)", len(g.Projects))
	}
	for path, want := range map[string]string{
		"img/base":          "Containerfile  docker.io/library/debian:bookworm",
		"img/lang/ruby":     "Dockerfile img/base ",
		"img/apps/deep/app": ".gitlab-deps img/lang/ruby ",
		"img/empty":         "none  ",
		"img/fill/p007":     "none  ",
	} {
		p := g.Project(path)
		if p == nil {
			t.Errorf("%s missing", path)
			continue
		}
		if got := p.Source + " " + strings.Join(p.Upstreams, ",") + " " + strings.Join(p.External, ","); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if g.Project("img/old") != nil || g.Project("other/x") != nil {
		t.Error("archived project or foreign group scanned")
	}
	var pages []string
	for _, c := range fake.Calls() {
		if c.Path == "/api/v4/groups/img/projects" {
			pages = append(pages, c.Query.Get("page"))
			if c.Query.Get("include_subgroups") != "true" || c.Query.Get("archived") != "false" || c.Query.Get("with_shared") != "false" {
				t.Errorf("listing query %v", c.Query)
			}
		}
		if strings.Contains(c.Path, "/img/empty") || strings.Contains(c.Path, "/repository/files/") && c.Query.Get("ref") == "" {
			t.Errorf("unexpected call %s %s?%s", c.Method, c.Path, c.Query.Encode())
		}
	}
	if !reflect.DeepEqual(pages, []string{"1", "2", "3"}) {
		t.Errorf("listing pages %q, want 1 2 3", pages)
	}
	// The ruby project's files are read from its default branch, master.
	if fake.CountCalls("GET", fmt.Sprintf("/api/v4/projects/%d/repository/files/Dockerfile/raw", 4)) != 1 {
		t.Errorf("Dockerfile of ruby not read once")
	}
}

func TestGitLabScanBoundsConcurrency(t *testing.T) {
	fake := newFake(t)
	for i := range 40 {
		fake.AddProject(fakegitlab.ProjectSpec{Path: fmt.Sprintf("g/p%02d", i), Files: map[string]string{"Containerfile": "FROM debian\n"}})
	}
	fake.SetLatency(20 * time.Millisecond)
	for _, limit := range []int{1, 3, 8} {
		fake.ResetCalls()
		if _, err := scanGitLab(t, newTestGitLab(t, fake, testToken), "g", limit); err != nil {
			t.Fatal(err)
		}
		if got := fake.MaxInFlight(); got > limit || (limit > 1 && got < 2) {
			t.Errorf("concurrency %d: %d requests in flight at most", limit, got)
		}
	}
}

func TestGitLabRetriesServerErrorsAndHonoursRetryAfter(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/a", Files: map[string]string{"Containerfile": "FROM debian\n"}})
	fake.InjectFault(fakegitlab.Fault{Method: "GET", Path: "/api/v4/groups/", Status: 502, Times: 2})
	fake.InjectFault(fakegitlab.Fault{Method: "GET", Path: "~/repository/files/Containerfile", Status: 429, RetryAfter: "1", Times: 1})
	start := time.Now()
	g, err := scanGitLab(t, newTestGitLab(t, fake, testToken), "g", 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Projects) != 1 || g.Projects[0].Source != "Containerfile" {
		t.Errorf("projects %+v", g.Projects)
	}
	if n := fake.CountCalls("GET", "/api/v4/groups/g/projects"); n != 3 {
		t.Errorf("group listed %d times, want 3 (two 502, one success)", n)
	}
	var rateLimited, retried time.Time
	for _, c := range fake.Calls() {
		if strings.HasSuffix(c.Path, "Containerfile/raw") {
			if c.Status == 429 {
				rateLimited = c.Time
			} else {
				retried = c.Time
			}
		}
	}
	if wait := retried.Sub(rateLimited); rateLimited.IsZero() || wait < 900*time.Millisecond {
		t.Errorf("retried %v after the 429 with Retry-After: 1 (total %v)", wait, time.Since(start))
	}
}

func TestGitLabRetriesTimeouts(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/a", Files: map[string]string{"Containerfile": "FROM debian\n"}})
	fake.InjectFault(fakegitlab.Fault{Method: "GET", Path: "~Containerfile", Delay: time.Second, Times: 1})
	api, err := NewGitLab(GitLabConfig{URL: fake.URL(), Token: testToken, MinBackoff: time.Millisecond, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scanGitLab(t, api, "g", 1); err != nil {
		t.Fatal(err)
	}
	if n := fake.CountCalls("GET", "/api/v4/projects/2/repository/files/Containerfile"); n != 2 {
		t.Errorf("Containerfile asked %d times, want 2 (one timed out)", n)
	}
}

func TestGitLabGivesUpAsTemporaryAfterRetries(t *testing.T) {
	fake := newFake(t)
	fake.AddGroup("g")
	fake.InjectFault(fakegitlab.Fault{Path: "/api/v4/groups/g", Status: 503})
	api, _ := NewGitLab(GitLabConfig{URL: fake.URL(), Token: testToken, MaxRetries: 3, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	_, err := scanGitLab(t, api, "g", 1)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || !apiErr.Temporary() {
		t.Fatalf("err = %v, want a temporary 503 APIError", err)
	}
	if !strings.Contains(err.Error(), "list projects of group g: GitLab answered 503") || !strings.Contains(err.Error(), "4 attempts") {
		t.Errorf("err = %v", err)
	}
	if n := fake.CountCalls("", "/api/v4/groups/g"); n != 4 {
		t.Errorf("%d attempts, want 4", n)
	}
}

func TestGitLabErrorsNameTheProblemNotTheToken(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/a", Files: map[string]string{"Containerfile": "FROM debian\n"}})
	fake.AddTokenWithAccess("guest-token-abcdef", 10, "read_api")
	cases := []struct {
		name, token, group string
		status             int
		want               string
	}{
		{"bad token", "wrong-token-123456", "g", 401, "check the token"},
		{"no such group", testToken, "nope", 404, "no such group, or the token cannot see it"},
		{"guest cannot read files", "guest-token-abcdef", "g", 403, "project g/a: read .gitlab-deps"},
	}
	for _, tc := range cases {
		_, err := scanGitLab(t, newTestGitLab(t, fake, tc.token), tc.group, 2)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != tc.status || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want status %d and %q", tc.name, err, tc.status, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), tc.token) {
			t.Errorf("%s: the token is in the error: %v", tc.name, err)
		}
	}
}

func TestGitLabScanFailsOnMalformedDepsFile(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/a", Files: map[string]string{".gitlab-deps": "g/b g/c\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/b"})
	_, err := scanGitLab(t, newTestGitLab(t, fake, testToken), "g", 2)
	if err == nil || !strings.HasPrefix(err.Error(), "project g/a: .gitlab-deps line 1:") {
		t.Errorf("err = %v", err)
	}
}

func hookSummary(h fakegitlab.Hook) string {
	return fmt.Sprintf("%s pipeline=%t push=%t ssl=%t token=%q", h.URL, h.PipelineEvents, h.PushEvents, h.EnableSSLVerification, h.Token)
}

func TestHooksSyncEditsNeverDuplicates(t *testing.T) {
	const url = "https://chain.example.com/hook"
	fake := newFake(t)
	for _, p := range []string{"g/none", "g/wrong", "g/right", "g/twice"} {
		fake.AddProject(fakegitlab.ProjectSpec{Path: p})
	}
	fake.AddHook("g/wrong", fakegitlab.Hook{URL: url, PushEvents: true, PipelineEvents: false, EnableSSLVerification: false})
	fake.AddHook("g/right", fakegitlab.Hook{URL: url, PipelineEvents: true, EnableSSLVerification: true})
	fake.AddHook("g/right", fakegitlab.Hook{URL: "https://other.example.com/", PushEvents: true})
	fake.AddHook("g/twice", fakegitlab.Hook{URL: url, PipelineEvents: true, EnableSSLVerification: true})
	fake.AddHook("g/twice", fakegitlab.Hook{URL: url, PipelineEvents: true, EnableSSLVerification: true})
	api := newTestGitLab(t, fake, testToken)
	ctx := context.Background()
	projects, err := api.GroupProjects(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}

	plan, err := PlanHooks(ctx, api, projects, WantedHook(url, ""), 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Counts().String(); got != "added 1, updated 2, unchanged 1" {
		t.Errorf("plan: %s", got)
	}
	counts, err := plan.Apply(ctx, api, 4)
	if err != nil || counts.String() != "added 1, updated 2, unchanged 1" {
		t.Fatalf("apply: %s, %v", counts, err)
	}
	want := url + " pipeline=true push=false ssl=true token=\"\""
	for _, p := range []string{"g/none", "g/wrong", "g/right", "g/twice"} {
		var mine []string
		for _, h := range fake.Hooks(p) {
			if h.URL == url {
				mine = append(mine, hookSummary(h))
			}
		}
		if len(mine) != 1 || mine[0] != want {
			t.Errorf("%s: hooks for the URL %q, want exactly one %q", p, mine, want)
		}
	}
	if n := len(fake.Hooks("g/right")); n != 2 {
		t.Errorf("the other hook of g/right was touched: %d hooks", n)
	}

	// Again: nothing to do.
	fake.ResetCalls()
	plan, _ = PlanHooks(ctx, api, projects, WantedHook(url, ""), 4)
	if counts, err := plan.Apply(ctx, api, 4); err != nil || counts.String() != "added 0, updated 0, unchanged 4" {
		t.Errorf("second run: %s, %v", counts, err)
	}
	for _, c := range fake.Calls() {
		if c.Method != "GET" {
			t.Errorf("second run wrote: %s %s", c.Method, c.Path)
		}
	}

	// With a secret every hook is rewritten, since its token cannot be read.
	plan, _ = PlanHooks(ctx, api, projects, WantedHook(url, "s3cret-webhook"), 4)
	if counts, err := plan.Apply(ctx, api, 4); err != nil || counts.String() != "added 0, updated 4, unchanged 0" {
		t.Errorf("with secret: %s, %v", counts, err)
	}
	for _, p := range []string{"g/none", "g/twice"} {
		if hooks := fake.Hooks(p); len(hooks) != 1 || hooks[0].Token != "s3cret-webhook" {
			t.Errorf("%s: %+v", p, hooks)
		}
	}
}

func TestHooksSyncDoesNotRetryAFailedCreate(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/a"})
	fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/hooks", Status: 500, Times: 1})
	api := newTestGitLab(t, fake, testToken)
	projects, _ := api.GroupProjects(context.Background(), "g")
	plan, err := PlanHooks(context.Background(), api, projects, WantedHook("https://x.example/hook", ""), 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = plan.Apply(context.Background(), api, 1)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusInternalServerError {
		t.Errorf("err = %v", err)
	}
	if n := fake.CountCalls("POST", ""); n != 1 {
		t.Errorf("%d POSTs, want 1: a POST that may have been applied is not repeated", n)
	}
}

func TestHooksSyncNeedsMaintainer(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/a"})
	fake.AddTokenWithAccess("developer-token-xyz", fakegitlab.Developer, "api")
	api := newTestGitLab(t, fake, "developer-token-xyz")
	projects, _ := api.GroupProjects(context.Background(), "g")
	_, err := PlanHooks(context.Background(), api, projects, WantedHook("https://x.example/hook", ""), 1)
	if err == nil || !strings.Contains(err.Error(), "list hooks of g/a: GitLab answered 403 Forbidden; the token needs the api scope and the Maintainer role") {
		t.Errorf("err = %v", err)
	}
}

func TestGitLabScanOfASubgroupByPath(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/base"})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/lang/ruby", Files: map[string]string{"Containerfile": "FROM registry.example.com/img/base\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/lang/deep/python"})
	g, err := scanGitLab(t, newTestGitLab(t, fake, testToken), "img/lang", 2)
	if err != nil {
		t.Fatal(err)
	}
	// img/base is outside the scan: the image is external, with a warning.
	if len(g.Projects) != 2 || g.Project("img/lang/deep/python") == nil || !reflect.DeepEqual(g.Project("img/lang/ruby").External, []string{"registry.example.com/img/base:latest"}) || len(g.Warnings) != 1 {
		t.Errorf("projects %v, warnings %q", g.Projects, g.Warnings)
	}
	if n := fake.CountCalls("GET", "/api/v4/groups/img/lang/projects"); n != 1 {
		t.Errorf("subgroup listed %d times; calls %v", n, fake.Calls())
	}
	for _, c := range fake.Calls() {
		if strings.HasPrefix(c.Path, "/api/v4/groups/") && c.EscapedPath != "/api/v4/groups/img%2Flang/projects" {
			t.Errorf("group id not URL-encoded: %s", c.EscapedPath)
		}
	}
}

func TestGitLabDoesNotWaitForAnUnreasonableRetryAfter(t *testing.T) {
	fake := newFake(t)
	fake.AddGroup("g")
	fake.InjectFault(fakegitlab.Fault{Path: "/api/v4/groups/g", Status: 429, RetryAfter: "3600"})
	_, err := scanGitLab(t, newTestGitLab(t, fake, testToken), "g", 1)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 429 || !apiErr.Temporary() {
		t.Errorf("err = %v", err)
	}
	if n := fake.CountCalls("", "/api/v4/groups/g"); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// A POST that failed with a 5xx is not repeated, and the error does not
// claim it was.
func TestGitLabFailedPOSTIsNotRepeatedAndSaysSo(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/p"})
	fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/pipeline", Status: 500})
	api := newTestGitLab(t, fake, testToken)
	_, err := api.CreatePipeline(context.Background(), "g/p", Target{Ref: "main"}, "20261126-101500-a1b2c3d4", nil)
	if err == nil || strings.Contains(err.Error(), "attempts") || !strings.Contains(err.Error(), "not repeated") {
		t.Errorf("err = %v", err)
	}
	if n := fake.CountCalls("POST", "/api/v4/projects/"); n != 1 {
		t.Errorf("%d POSTs, want 1", n)
	}
}

// GitLab disables a hook whose deliveries keep failing (the receiver was
// down), and editing it does not enable it again: hooks sync replaces it.
func TestHooksSyncReplacesAHookGitLabDisabled(t *testing.T) {
	const url = "https://chain.example.com/hook"
	fake := newFake(t)
	for _, p := range []string{"g/off", "g/paused"} {
		fake.AddProject(fakegitlab.ProjectSpec{Path: p})
	}
	fake.AddHook("g/off", fakegitlab.Hook{URL: url, PipelineEvents: true, EnableSSLVerification: true, AlertStatus: "disabled"})
	fake.AddHook("g/paused", fakegitlab.Hook{URL: url, PipelineEvents: true, EnableSSLVerification: true, AlertStatus: "temporarily_disabled"})
	api := newTestGitLab(t, fake, testToken)
	if counts := syncGroupHooks(t, api, url, ""); counts.String() != "added 0, updated 2, unchanged 0" {
		t.Fatalf("apply: %s", counts)
	}
	for _, p := range []string{"g/off", "g/paused"} {
		hooks := fake.Hooks(p)
		if len(hooks) != 1 || hooks[0].URL != url || hooks[0].AlertStatus != "" || !hooks[0].PipelineEvents {
			t.Errorf("%s: hooks %+v, want one enabled hook for %s", p, hooks, url)
		}
	}

	// A disabled hook with a token is replaced only when the secret is
	// given: a new hook without it would get 401 from the receiver.
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/secret"})
	id := fake.AddHook("g/secret", fakegitlab.Hook{URL: url, PipelineEvents: true, EnableSSLVerification: true, Token: "old", AlertStatus: "disabled"})
	syncGroupHooks(t, api, url, "")
	if hooks := fake.Hooks("g/secret"); len(hooks) != 1 || hooks[0].ID != id || hooks[0].Token != "old" {
		t.Errorf("g/secret without the secret: %+v, want hook %d with its token", hooks, id)
	}
	syncGroupHooks(t, api, url, "new")
	if hooks := fake.Hooks("g/secret"); len(hooks) != 1 || hooks[0].AlertStatus != "" || hooks[0].Token != "new" {
		t.Errorf("g/secret with the secret: %+v, want one enabled hook with the token", hooks)
	}
}

// A 429 whose Retry-After is longer than the client waits for ends the
// call; the engine then waits what GitLab asked before it tries again,
// not its own 2 s backoff.
func TestEngineHonoursALongRetryAfter(t *testing.T) {
	fake := newFake(t)
	fakegitlab.NewPipelines(fake)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "ops/base"})
	rubyID := fake.AddProject(fakegitlab.ProjectSpec{Path: "ops/ruby"})
	fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "/api/v4/projects", Status: http.StatusTooManyRequests, RetryAfter: "600", Times: 1})
	api := newTestGitLab(t, fake, testToken)
	graph := testGraph("ops/base:", "ops/ruby: ops/base")
	graph.Refs["ops/ruby"] = ProjectRef{Path: "ops/ruby", ID: rubyID, DefaultBranch: "main"}
	e, err := NewEngine(EngineOptions{StatePath: t.TempDir() + "/chain.db", API: api, Planner: graph})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }
	if _, err := e.HandlePipeline(PipelineUpdate{Project: "ops/base", Ref: "main", DefaultBranch: "main", PipelineID: 31, Status: "success"}); err != nil {
		t.Fatal(err)
	}
	next, err := e.fireDue(context.Background(), context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(600 * time.Second); next.Before(want) {
		t.Errorf("next try at %v, want not before %v (Retry-After: 600)", next, want)
	}
}

// A hook whose URL differs from --url only by a trailing slash or the case
// of the host is the same endpoint: it is corrected in place, never joined
// by a second hook that would deliver every event twice.
func TestHooksSyncTakesTheSameURLSpelledOtherwise(t *testing.T) {
	const url = "https://chain.example.com/hook"
	fake := newFake(t)
	for _, p := range []string{"g/slash", "g/upper"} {
		fake.AddProject(fakegitlab.ProjectSpec{Path: p})
	}
	fake.AddHook("g/slash", fakegitlab.Hook{URL: url + "/", PipelineEvents: true, EnableSSLVerification: true})
	fake.AddHook("g/upper", fakegitlab.Hook{URL: "https://Chain.Example.com/hook", PipelineEvents: true, EnableSSLVerification: true})
	api := newTestGitLab(t, fake, testToken)
	if counts := syncGroupHooks(t, api, url, ""); counts.String() != "added 0, updated 2, unchanged 0" {
		t.Fatalf("apply: %s", counts)
	}
	for _, p := range []string{"g/slash", "g/upper"} {
		if hooks := fake.Hooks(p); len(hooks) != 1 || hooks[0].URL != url {
			t.Errorf("%s: hooks %+v, want one with URL %s", p, hooks, url)
		}
	}
}

// syncGroupHooks plans and applies the hooks for url (with secret) on every
// project of group g, as `chain hooks sync` does.
func syncGroupHooks(t *testing.T, api *GitLab, url, secret string) HookCounts {
	t.Helper()
	ctx := context.Background()
	projects, err := api.GroupProjects(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanHooks(ctx, api, projects, WantedHook(url, secret), 4)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := plan.Apply(ctx, api, 4)
	if err != nil {
		t.Fatal(err)
	}
	return counts
}

// TestGitLabMessageCannotDriveATerminal: GitLab's message for a pipeline
// that cannot be created quotes the project's own .gitlab-ci.yml, which
// its owner writes. The message becomes the step's reason, which `chain
// status RUN` prints on the admin's terminal: escape sequences (clearing
// the screen, setting the clipboard with OSC 52), other control characters
// and bidirectional overrides must arrive as visible escapes, not as the
// characters themselves.
func TestGitLabMessageCannotDriveATerminal(t *testing.T) {
	fake := newFake(t)
	fake.AddProject(fakegitlab.ProjectSpec{Path: "g/p"})
	api := newTestGitLab(t, fake, testToken)
	const hostile = `jobs:\u001b[2J\u001b]52;c;cm0gLXJmIH4=\u0007build config contains unknown keys: \u202eevil\u009b31m\u0000`
	for _, body := range []string{`{"message":"` + hostile + `"}`, `{"message":{"base":["` + hostile + `"]}}`, `{"error":"` + hostile + `"}`} {
		fake.ClearFaults()
		fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/pipeline", Status: 400, Body: body})
		_, err := api.CreatePipeline(context.Background(), "g/p", Target{Ref: "main"}, "20261126-101500-a1b2c3d4", nil)
		if err == nil {
			t.Fatalf("%s: no error", body)
		}
		msg := err.Error()
		if i := strings.IndexFunc(msg, func(r rune) bool { return !unicode.IsGraphic(r) && r != ' ' }); i >= 0 {
			t.Errorf("the message holds %U: %q", []rune(msg[i:])[0], msg)
		}
		if !strings.Contains(msg, "unknown keys") {
			t.Errorf("GitLab's words lost: %q", msg)
		}
	}
}
