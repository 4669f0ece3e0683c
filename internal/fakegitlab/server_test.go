package fakegitlab

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

func newClient(t *testing.T, s *Server, token string) *gitlab.Client {
	t.Helper()
	c, err := gitlab.NewClient(token, gitlab.WithBaseURL(s.URL()), gitlab.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPaginationHeadersFollowGitLab(t *testing.T) {
	s := New()
	defer s.Close()
	s.AddToken("t", "read_api")
	for range 45 {
		s.AddProject(ProjectSpec{Path: "g/p"})
	}
	req, _ := http.NewRequest("GET", s.URL()+"/api/v4/groups/g/projects?per_page=20&page=2", nil)
	req.Header.Set("PRIVATE-TOKEN", "t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for h, want := range map[string]string{"X-Page": "2", "X-Per-Page": "20", "X-Total": "45", "X-Total-Pages": "3", "X-Next-Page": "3", "X-Prev-Page": "1"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if link := resp.Header.Get("Link"); !strings.Contains(link, `page=3&per_page=20>; rel="next"`) || !strings.Contains(link, `rel="last"`) {
		t.Errorf("Link = %s", link)
	}
	var items []map[string]any
	json.NewDecoder(resp.Body).Decode(&items)
	if len(items) != 20 {
		t.Errorf("%d items on page 2", len(items))
	}

	// The client library reads the same headers.
	c := newClient(t, s, "t")
	_, r, err := c.Groups.ListGroupProjects("g", &gitlab.ListGroupProjectsOptions{ListOptions: gitlab.ListOptions{Page: 3, PerPage: 20}})
	if err != nil || r.NextPage != 0 || r.TotalPages != 3 || r.CurrentPage != 3 || r.TotalItems != 45 {
		t.Errorf("last page: %+v, %v", r, err)
	}
}

func TestUnauthenticatedRequestsGet401(t *testing.T) {
	s := New()
	defer s.Close()
	s.AddProject(ProjectSpec{Path: "g/p"})
	resp, err := http.Get(s.URL() + "/api/v4/groups/g/projects")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || strings.TrimSpace(string(body)) != `{"message":"401 Unauthorized"}` {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if calls := s.Calls(); len(calls) != 1 || calls[0].Authenticated || calls[0].Status != 401 {
		t.Errorf("call log %+v", calls)
	}
}

func TestProjectsByEncodedPathAndRawFiles(t *testing.T) {
	s := New()
	defer s.Close()
	s.AddToken("t", "read_api")
	s.AddProject(ProjectSpec{Path: "g/sub/app", Files: map[string]string{"Containerfile": "FROM x\n", "docker/Dockerfile": "FROM y\n"}})
	c := newClient(t, s, "t")
	p, _, err := c.Projects.GetProject("g/sub/app", nil)
	if err != nil || p.PathWithNamespace != "g/sub/app" || p.DefaultBranch != "main" || p.Namespace.FullPath != "g/sub" {
		t.Fatalf("project %+v, %v", p, err)
	}
	data, _, err := c.RepositoryFiles.GetRawFile("g/sub/app", "docker/Dockerfile", &gitlab.GetRawFileOptions{Ref: gitlab.Ptr("main")})
	if err != nil || string(data) != "FROM y\n" {
		t.Errorf("nested file: %q, %v", data, err)
	}
	if calls := s.Calls(); calls[len(calls)-1].EscapedPath != "/api/v4/projects/g%2Fsub%2Fapp/repository/files/docker%2FDockerfile/raw" {
		t.Errorf("escaped path %s", calls[len(calls)-1].EscapedPath)
	}
	_, _, err = c.RepositoryFiles.GetRawFile(p.ID, ".gitlab-deps", &gitlab.GetRawFileOptions{Ref: gitlab.Ptr("main")})
	if !errors.Is(err, gitlab.ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	_, _, err = c.RepositoryFiles.GetRawFile(p.ID, "Containerfile", &gitlab.GetRawFileOptions{Ref: gitlab.Ptr("nobranch")})
	if !errors.Is(err, gitlab.ErrNotFound) {
		t.Errorf("missing ref: %v", err)
	}
}

func TestArchivedFilterAndSubgroups(t *testing.T) {
	s := New()
	defer s.Close()
	s.AddToken("t", "read_api")
	s.AddProject(ProjectSpec{Path: "g/a"})
	s.AddProject(ProjectSpec{Path: "g/sub/b"})
	s.AddProject(ProjectSpec{Path: "g/old", Archived: true})
	c := newClient(t, s, "t")
	count := func(opt *gitlab.ListGroupProjectsOptions) int {
		ps, _, err := c.Groups.ListGroupProjects("g", opt)
		if err != nil {
			t.Fatal(err)
		}
		return len(ps)
	}
	if n := count(&gitlab.ListGroupProjectsOptions{}); n != 2 {
		t.Errorf("without subgroups: %d, want 2 (a, old)", n)
	}
	if n := count(&gitlab.ListGroupProjectsOptions{IncludeSubGroups: gitlab.Ptr(true)}); n != 3 {
		t.Errorf("with subgroups: %d", n)
	}
	if n := count(&gitlab.ListGroupProjectsOptions{IncludeSubGroups: gitlab.Ptr(true), Archived: gitlab.Ptr(false)}); n != 2 {
		t.Errorf("not archived: %d", n)
	}
	if n := count(&gitlab.ListGroupProjectsOptions{Archived: gitlab.Ptr(true)}); n != 1 {
		t.Errorf("archived: %d", n)
	}
}

func TestHooksCRUDNeverReturnsTheToken(t *testing.T) {
	s := New()
	defer s.Close()
	s.AddToken("t", "api")
	s.AddToken("ro", "read_api")
	s.AddProject(ProjectSpec{Path: "g/a"})
	c := newClient(t, s, "t")
	h, _, err := c.Projects.AddProjectHook("g/a", &gitlab.AddProjectHookOptions{URL: gitlab.Ptr("https://h.example/x"), Token: gitlab.Ptr("sekrit"), PipelineEvents: gitlab.Ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	if !h.PushEvents || !h.EnableSSLVerification || !h.PipelineEvents {
		t.Errorf("defaults: %+v (push_events and SSL verification default to true)", h)
	}
	_, _, err = c.Projects.EditProjectHook("g/a", h.ID, &gitlab.EditProjectHookOptions{PushEvents: gitlab.Ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	hooks, _, err := c.Projects.ListProjectHooks("g/a", nil)
	if err != nil || len(hooks) != 1 || hooks[0].PushEvents || hooks[0].URL != "https://h.example/x" {
		t.Fatalf("hooks %+v, %v", hooks, err)
	}
	if got := s.Hooks("g/a"); got[0].Token != "sekrit" {
		t.Errorf("token not stored: %+v", got)
	}
	// The raw JSON of every hook read the client made: the client's struct
	// has no token field, so only the bytes show whether one was sent.
	replayed := 0
	for _, call := range s.Calls() {
		if call.Method == "GET" && strings.Contains(call.Path, "hooks") {
			req, err := http.NewRequest("GET", s.URL()+call.EscapedPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("PRIVATE-TOKEN", "t")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), "https://h.example/x") {
				t.Fatalf("GET %s again: HTTP %d, %v: %s; want the hook listed", call.EscapedPath, resp.StatusCode, err, body)
			}
			replayed++
			if strings.Contains(string(body), "sekrit") || strings.Contains(string(body), `"token"`) {
				t.Errorf("hook listing shows the token: %s", body)
			}
		}
	}
	if replayed == 0 {
		t.Fatalf("no hook read among the calls: %+v", s.Calls())
	}
	_, _, err = newClient(t, s, "ro").Projects.AddProjectHook("g/a", &gitlab.AddProjectHookOptions{URL: gitlab.Ptr("https://h.example/y")})
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != 403 {
		t.Errorf("read_api token wrote a hook: %v", err)
	}
	if _, err := c.Projects.DeleteProjectHook("g/a", h.ID); err != nil || len(s.Hooks("g/a")) != 0 {
		t.Errorf("delete: %v", err)
	}
}

func TestFaultsAndHandleExtendTheServer(t *testing.T) {
	s := New()
	defer s.Close()
	s.AddToken("t", "api")
	s.Handle("POST /api/v4/projects/{id}/pipeline", func(w http.ResponseWriter, r *http.Request, p map[string]string) {
		writeJSON(w, http.StatusCreated, map[string]any{"id": 1, "project": p["id"]})
	})
	s.InjectFault(Fault{Method: "POST", Path: "/api/v4/projects/", Status: 429, RetryAfter: "7", Times: 1})
	req, _ := http.NewRequest("POST", s.URL()+"/api/v4/projects/g%2Fa/pipeline", nil)
	req.Header.Set("PRIVATE-TOKEN", "t")
	for i, want := range []int{429, 201} {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || (i == 0 && resp.Header.Get("Retry-After") != "7") {
			t.Errorf("request %d: %d (Retry-After %q), want %d", i, resp.StatusCode, resp.Header.Get("Retry-After"), want)
		}
	}
	if n := s.CountCalls("POST", "/api/v4/projects/g/a/pipeline"); n != 2 {
		t.Errorf("call log counted %d", n)
	}
}

// GitLab lists the projects shared with a group among the group's
// projects unless with_shared=false (the default is true).
func TestSharedProjectsListedUnlessWithSharedFalse(t *testing.T) {
	s := New()
	defer s.Close()
	s.AddToken("t", "read_api")
	s.AddProject(ProjectSpec{Path: "g/a"})
	s.AddProject(ProjectSpec{Path: "other/lib"})
	s.ShareProject("other/lib", "g")
	c := newClient(t, s, "t")
	paths := func(opt *gitlab.ListGroupProjectsOptions) []string {
		ps, _, err := c.Groups.ListGroupProjects("g", opt)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.PathWithNamespace)
		}
		sort.Strings(out)
		return out
	}
	if got := paths(&gitlab.ListGroupProjectsOptions{IncludeSubGroups: gitlab.Ptr(true)}); !slices.Equal(got, []string{"g/a", "other/lib"}) {
		t.Errorf("default: %q, want g/a and the shared other/lib", got)
	}
	if got := paths(&gitlab.ListGroupProjectsOptions{IncludeSubGroups: gitlab.Ptr(true), WithShared: gitlab.Ptr(false)}); !slices.Equal(got, []string{"g/a"}) {
		t.Errorf("with_shared=false: %q, want g/a", got)
	}
}
