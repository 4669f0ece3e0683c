package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/fakegitlab"
	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/chain"
)

const (
	e2eToken  = "glpat-e2e-token-do-not-print"
	e2eSecret = "webhook-secret-do-not-print"
)

// opsctlEnv runs the built binary with extra environment variables.
func opsctlEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testenv.Opsctl(t), args...)
	cmd.Env = append(os.Environ(), "GITLAB_TOKEN=")
	cmd.Env = append(cmd.Env, env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func examplesDir() string { return filepath.Join(testenv.ModuleRoot(), "examples", "images") }

func TestChainReadmeExampleRunsWithoutServer(t *testing.T) {
	out, stderr, code := testenv.Run(t, "", "chain", "plan", "--dir", examplesDir())
	want := "1: ops/base tools/linter\n2: ops/python ops/ruby\n3: ops/app\n4: ops/deploy\n"
	if code != 0 || out != want || stderr != "" {
		t.Fatalf("exit %d\nstdout %q\nwant   %q\nstderr %q", code, out, want, stderr)
	}
	out, _, code = testenv.Run(t, "", "chain", "plan", "--dir", examplesDir(), "ops/ruby", "-o", "json")
	var plan chain.Plan
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || !reflect.DeepEqual(plan.Waves, [][]string{{"ops/ruby"}, {"ops/app"}, {"ops/deploy"}}) {
		t.Errorf("plan from ops/ruby: exit %d, %s", code, out)
	}
	out, _, code = testenv.Run(t, "", "chain", "scan", "--dir", examplesDir(), "-o", "dot")
	if code != 0 || !strings.HasPrefix(out, "digraph chain {") || !strings.Contains(out, `"ops/ruby" -> "ops/app";`) {
		t.Errorf("dot: exit %d\n%s", code, out)
	}
	// Graphviz itself must accept the DOT and draw every edge.
	cmd := exec.Command(testenv.Need(t, "dot", "graphviz"), "-Tplain")
	cmd.Stdin = strings.NewReader(out)
	plain, err := cmd.Output()
	if err != nil {
		t.Fatalf("graphviz rejects the DOT output: %v", err)
	}
	if edges := strings.Count(string(plain), "\nedge "); edges != 7 {
		t.Errorf("graphviz drew %d edges, want 7 (5 between projects, 2 from external images):\n%s", edges, plain)
	}
	out, _, code = testenv.Run(t, "", "chain", "scan", "--dir", examplesDir(), "-o", "mermaid")
	if code != 0 || !strings.HasPrefix(out, "flowchart LR\n") {
		t.Errorf("mermaid: exit %d\n%s", code, out)
	}
}

func TestChainScanJSONMatchesSpecShape(t *testing.T) {
	out, _, code := testenv.Run(t, "", "chain", "scan", "--dir", examplesDir(), "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"projects", "cycles", "warnings"} {
		if string(doc[key]) == "" || string(doc[key]) == "null" {
			t.Errorf("%s is %s, want a list", key, doc[key])
		}
	}
	var projects []map[string]any
	json.Unmarshal(doc["projects"], &projects)
	if len(projects) != 6 || projects[1]["path"] != "ops/base" || projects[1]["source"] != "Containerfile" ||
		!reflect.DeepEqual(projects[1]["external"], []any{"docker.io/library/debian:bookworm"}) {
		t.Errorf("projects %v", projects)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		path := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestChainCycleExitsOneAndIsNamed(t *testing.T) {
	dir := writeFiles(t, map[string]string{"g/a/.gitlab-deps": "g/b\n", "g/b/.gitlab-deps": "g/a\n", "g/c/Containerfile": "FROM debian\n"})
	out, _, code := testenv.Run(t, "", "chain", "scan", "--dir", dir, "-o", "json")
	var g chain.Graph
	if code != 1 || json.Unmarshal([]byte(out), &g) != nil || !reflect.DeepEqual(g.Cycles, [][]string{{"g/a", "g/b"}}) || len(g.Projects) != 3 {
		t.Errorf("scan: exit %d, %s", code, out)
	}
	out, stderr, code := testenv.Run(t, "", "chain", "plan", "--dir", dir)
	if code != 1 || out != "" || strings.TrimSpace(stderr) != "opsctl: chain plan: dependency cycle: g/a -> g/b -> g/a" {
		t.Errorf("plan: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// A plan that does not reach the cycle works.
	out, _, code = testenv.Run(t, "", "chain", "plan", "--dir", dir, "g/c")
	if code != 0 || out != "1: g/c\n" {
		t.Errorf("plan g/c: exit %d, %q", code, out)
	}
}

func TestChainBadInputIsOneLine(t *testing.T) {
	tokenFile := credentialFile(t, t.TempDir(), "token", e2eToken+"\n")
	emptyFile := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(emptyFile, nil, 0o600)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"chain", "scan"}, 2, "no source: expected --dir DIR, or --gitlab-url URL --group GROUP"},
		{[]string{"chain", "scan", "--dir", ".", "--gitlab-url", "https://g.example"}, 2, "--dir cannot be combined"},
		{[]string{"chain", "scan", "--gitlab-url", "https://g.example"}, 2, "--gitlab-url needs --group GROUP"},
		{[]string{"chain", "scan", "--gitlab-url", "ftp://g.example", "--group", "g"}, 2, `--gitlab-url "ftp://g.example": expected an http(s) URL`},
		{[]string{"chain", "scan", "--gitlab-url", "https://g.example", "--group", "g"}, 2, "no GitLab token: expected --token-file FILE or the GITLAB_TOKEN environment variable"},
		{[]string{"chain", "scan", "--gitlab-url", "https://g.example", "--group", "g", "--token-file", "/nonexistent/token"}, 2, "--token-file /nonexistent/token: no such file"},
		{[]string{"chain", "scan", "--dir", examplesDir(), "--registry", "https://r.example/x"}, 2, "--registry"},
		{[]string{"chain", "scan", "--dir", examplesDir(), "--concurrency", "0"}, 2, "--concurrency 0: expected a number from 1 to 256"},
		{[]string{"chain", "scan", "--dir", examplesDir(), "-o", "yaml"}, 2, "expected one of text, json, svg, dot, mermaid"},
		{[]string{"chain", "scan", "--dir", "/nonexistent/images"}, 2, "--dir /nonexistent/images: no such folder"},
		{[]string{"chain", "plan", "--dir", examplesDir(), "ops/nope"}, 2, "chain plan: ops/nope: not a project of the scanned graph"},
		{[]string{"chain", "plan", "--dir", examplesDir(), "ops//x"}, 2, "chain plan: ROOT"},
		{[]string{"chain", "hooks", "sync", "--dir", examplesDir(), "--hook-url", "https://h.example/hook"}, 2, "--dir: this command works on GitLab"},
		{[]string{"chain", "hooks", "sync", "--gitlab-url", "https://g.example", "--group", "g", "--token-file", tokenFile}, 2, "--hook-url is required"},
		{[]string{"chain", "hooks", "sync", "--hook-url", "h.example/hook"}, 2, `--hook-url "h.example/hook": expected an http(s) URL`},
		{[]string{"chain", "serve", "--listen", ":8080", "--insecure-no-webhook-secret"}, 2, "no source: expected --dir DIR, or --gitlab-url URL --group GROUP"},
		{[]string{"chain", "serve", "--listen", ":8080"}, 2, "no webhook secret: expected --webhook-secret-file FILE"},
		{[]string{"chain", "serve", "--listen", ":8080", "--retention-runs", "-1"}, 2, "--retention-runs -1: expected 0 (no count limit) or more"},
		{[]string{"chain", "trigger", "g/base", "--server", "http://127.0.0.1:8686"}, 2, "--server needs --webhook-secret-file FILE"},
		{[]string{"chain", "watch", "--once", "--dir", "x"}, 2, `required flag(s) "state" not set`},
		// Issue 19, item 18: a dry run validates as the real run does, and
		// a named file or folder that is missing or of the wrong kind is a
		// usage error, whichever flag names it.
		{[]string{"chain", "trigger", "ops/base", "--dir", examplesDir(), "--dry-run"}, 2, "--dir: this command works on GitLab"},
		{[]string{"chain", "watch", "--once", "--dry-run", "--state", filepath.Join(t.TempDir(), "w.db"), "--dir", examplesDir()}, 2, "--dir: this command works on GitLab"},
		{[]string{"chain", "scan", "--dir", tokenFile}, 2, "--dir " + tokenFile + ": a file; expected a folder"},
		{[]string{"chain", "scan", "--gitlab-url", "https://g.example", "--group", "g", "--token-file", filepath.Dir(tokenFile)}, 2, "--token-file " + filepath.Dir(tokenFile) + ": a folder; expected a regular file"},
		{[]string{"chain", "scan", "--gitlab-url", "https://g.example", "--group", "g", "--token-file", emptyFile}, 1, "--token-file: secret file " + emptyFile + ": empty"},
		{[]string{"chain", "hooks", "sync", "--gitlab-url", "https://g.example", "--group", "g", "--token-file", tokenFile, "--hook-url", "https://h.example/hook", "--webhook-secret-file", "/nonexistent/secret"}, 2, "--webhook-secret-file /nonexistent/secret: no such file"},
		{[]string{"chain", "status", "--state", "/nonexistent/chain.db"}, 2, "--state /nonexistent/chain.db: no such file"},
	}
	for _, tc := range cases {
		out, stderr, code := opsctlEnv(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || out != "" {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q (want one line with %q)", tc.args, code, tc.code, out, stderr, tc.want)
		}
	}
}

// fakeImages is a GitLab group like examples/images.
func fakeImages(t *testing.T) *fakegitlab.Server {
	t.Helper()
	fake := fakegitlab.New()
	t.Cleanup(fake.Close)
	fake.AddToken(e2eToken, "api")
	host := strings.TrimPrefix(fake.URL(), "http://")
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/base", Files: map[string]string{"Containerfile": "ARG D=bookworm\nFROM debian:${D}\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/lang/ruby", Files: map[string]string{"Containerfile": "FROM " + host + "/img/base:latest\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/lang/python", Files: map[string]string{"Dockerfile": "FROM registry.127.0.0.1/img/base\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/app", Files: map[string]string{".gitlab-deps": "img/lang/ruby\nimg/lang/python # both\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/retired", Archived: true, Files: map[string]string{".gitlab-deps": "img/app\n"}})
	return fake
}

func TestChainAgainstFakeGitLab(t *testing.T) {
	fake := fakeImages(t)
	tokenFile := credentialFile(t, t.TempDir(), "token", e2eToken+"\n")
	secretFile := credentialFile(t, t.TempDir(), "secret", e2eSecret+"\n")
	source := []string{"--gitlab-url", fake.URL(), "--group", "img", "--token-file", tokenFile}
	noSecrets := func(what, s string) {
		t.Helper()
		if strings.Contains(s, e2eToken) || strings.Contains(s, e2eSecret) {
			t.Errorf("%s shows a secret: %s", what, s)
		}
	}

	// scan: the default registries are the GitLab host and registry.HOST.
	// Debug logs and a retry included, nothing shows the token.
	fake.InjectFault(fakegitlab.Fault{Path: "~/repository/files/Containerfile", Status: 503, RetryAfter: "0", Times: 1})
	out, stderr, code := opsctlEnv(t, nil, append([]string{"chain", "scan", "-o", "json", "--log-level", "debug"}, source...)...)
	noSecrets("scan", out+stderr)
	if !strings.Contains(stderr, "GitLab API: retrying") {
		t.Errorf("the retry is not logged: %s", stderr)
	}
	var g chain.Graph
	if code != 0 || json.Unmarshal([]byte(out), &g) != nil {
		t.Fatalf("scan: exit %d\n%s\n%s", code, out, stderr)
	}
	got := map[string]string{}
	for _, p := range g.Projects {
		got[p.Path] = p.Source + ":" + strings.Join(p.Upstreams, ",")
	}
	want := map[string]string{"img/base": "Containerfile:", "img/lang/ruby": "Containerfile:img/base", "img/lang/python": "Dockerfile:img/base", "img/app": ".gitlab-deps:img/lang/python,img/lang/ruby"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scan graph %v, want %v", got, want)
	}

	// plan, with the token from the environment.
	out, stderr, code = opsctlEnv(t, []string{"GITLAB_TOKEN=" + e2eToken}, "chain", "plan", "--gitlab-url", fake.URL(), "--group", "img")
	noSecrets("plan", out+stderr)
	if code != 0 || out != "1: img/base\n2: img/lang/python img/lang/ruby\n3: img/app\n" {
		t.Errorf("plan: exit %d\n%s\n%s", code, out, stderr)
	}

	// hooks sync --dry-run writes nothing and names every project.
	fake.AddHook("img/base", fakegitlab.Hook{URL: "https://chain.example.com/hook", PushEvents: true, PipelineEvents: true, EnableSSLVerification: true})
	fake.ResetCalls()
	hooks := append([]string{"chain", "hooks", "sync", "--hook-url", "https://chain.example.com/hook", "--webhook-secret-file", secretFile}, source...)
	out, stderr, code = opsctlEnv(t, nil, append(hooks, "--dry-run")...)
	noSecrets("hooks sync --dry-run", out+stderr)
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, stderr)
	}
	for _, c := range fake.Calls() {
		if c.Method != "GET" {
			t.Errorf("dry run wrote: %s %s", c.Method, c.Path)
		}
	}
	for _, want := range []string{"add hook to img/app:", "add hook to img/lang/ruby:", "update hook ", " of img/base: push_events true -> false, token", "dry run: would have added 3, updated 1, unchanged 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if len(fake.Hooks("img/app")) != 0 {
		t.Error("dry run added a hook")
	}

	// The real thing, twice.
	out, stderr, code = opsctlEnv(t, nil, hooks...)
	noSecrets("hooks sync", out+stderr)
	if code != 0 || out != "added 3, updated 1, unchanged 0\n" {
		t.Errorf("sync: exit %d, %q, %s", code, out, stderr)
	}
	for _, p := range []string{"img/base", "img/app", "img/lang/ruby", "img/lang/python"} {
		hs := fake.Hooks(p)
		if len(hs) != 1 || hs[0].PushEvents || !hs[0].PipelineEvents || !hs[0].EnableSSLVerification || hs[0].Token != e2eSecret {
			t.Errorf("%s: hooks %+v", p, hs)
		}
	}
	out, _, code = opsctlEnv(t, nil, append(hooks[:5], source...)...) // without the secret
	if code != 0 || out != "added 0, updated 0, unchanged 4\n" {
		t.Errorf("second sync without secret: exit %d, %q", code, out)
	}
	if hs := fake.Hooks("img/app"); len(hs) != 1 || hs[0].Token != e2eSecret {
		t.Errorf("a sync without secret changed the token: %+v", hs)
	}
}

func TestChainGitLabFailuresExitCodes(t *testing.T) {
	fake := fakeImages(t)
	badToken := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(badToken, []byte("glpat-wrong-token-xyz\n"), 0o600)
	out, stderr, code := opsctlEnv(t, nil, "chain", "scan", "--gitlab-url", fake.URL(), "--group", "img", "--token-file", badToken)
	if code != 1 || out != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "401 Unauthorized") || strings.Contains(stderr, "glpat-wrong") {
		t.Errorf("401: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	// A GitLab that stays down is a temporary failure (75), after retries.
	fake.InjectFault(fakegitlab.Fault{Path: "~/repository/files/", Status: 503, RetryAfter: "0"})
	start := time.Now()
	out, stderr, code = opsctlEnv(t, []string{"GITLAB_TOKEN=" + e2eToken}, "chain", "plan", "--gitlab-url", fake.URL(), "--group", "img", "--log-level", "error")
	if code != cli.ExitTemporary || out != "" || !strings.HasPrefix(stderr, "opsctl: chain plan: project img/") ||
		!strings.Contains(stderr, " (ref main): GitLab answered 503 Service Unavailable; gave up after 6 attempts") {
		t.Errorf("503: exit %d after %v, stdout %q, stderr %q", code, time.Since(start), out, stderr)
	}
}

func TestChainScanWarningsGoToStderr(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"g/a/Containerfile": "ARG BASE\nFROM ${BASE}\n",
		"g/b/.gitlab-deps":  "g/a\ng/gone\n",
	})
	out, stderr, code := runForTest("chain", "scan", "--dir", dir)
	wantOut := "PROJECT  SOURCE         UPSTREAMS  EXTERNAL\ng/a      Containerfile  -          -\ng/b      .gitlab-deps   g/a        -\n"
	wantErr := "warning: g/a: Containerfile line 2: FROM ${BASE}: ARG BASE has no default (it is set with --build-arg)\n" +
		"warning: g/b: .gitlab-deps names g/gone, which is not a project of the scan; ignored\n"
	if code != 0 || out != wantOut || stderr != wantErr {
		t.Errorf("exit %d\nstdout %q\nwant   %q\nstderr %q\nwant   %q", code, out, wantOut, stderr, wantErr)
	}
	out, stderr, code = runForTest("chain", "scan", "--dir", dir, "-o", "json")
	var g chain.Graph
	if code != 0 || stderr != "" || json.Unmarshal([]byte(out), &g) != nil || len(g.Warnings) != 2 {
		t.Errorf("json: exit %d, stderr %q, %s", code, stderr, out)
	}
}

// Issue 19, item 18: the help offers what the command takes. --dir is
// offered by scan and plan only (the others refuse it), and no example
// needs a checkout of opsctl (the package ships no examples/ folder).
func TestChainHelpOffersOnlyWhatTheCommandTakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		dir  bool
	}{
		{[]string{"chain"}, true},
		{[]string{"chain", "scan"}, true},
		{[]string{"chain", "plan"}, true},
		{[]string{"chain", "hooks", "sync"}, false},
		{[]string{"chain", "serve"}, false},
		{[]string{"chain", "trigger"}, false},
		{[]string{"chain", "watch"}, false},
		{[]string{"chain", "status"}, false},
		{nil, true},
	} {
		out, _, code := runForTest(append(tc.args, "--help")...)
		if code != 0 {
			t.Fatalf("%v --help: exit %d", tc.args, code)
		}
		if strings.Contains(out, "--dir") != tc.dir {
			t.Errorf("opsctl %v --help offers --dir: %v, want %v\n%s", tc.args, !tc.dir, tc.dir, out)
		}
		if strings.Contains(out, "examples/") {
			t.Errorf("opsctl %v --help has an example on examples/, which the package does not ship\n%s", tc.args, out)
		}
	}
}

// Issue 19, item 17: chain status RUN --exit-status says how the run
// stands in its exit code (0 succeeded, 1 failed, 75 running), as
// gh run view --exit-status; without the flag the exit code stays 0.
func TestChainStatusExitStatus(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"g/a/Containerfile": "FROM debian\n",
		"g/b/.gitlab-deps":  "g/a\n",
	})
	planner, err := chain.ScanPlanner(context.Background(), chain.Scanner{Source: &chain.DirSource{Root: dir}, Registries: chain.AnyRegistry(), Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "chain.db")
	e, err := chain.NewEngine(chain.EngineOptions{StatePath: state, Planner: planner})
	if err != nil {
		t.Fatal(err)
	}
	runs := map[chain.RunStatus]string{}
	pipeline := int64(0)
	for _, want := range []chain.RunStatus{chain.RunRunning, chain.RunFailed, chain.RunSucceeded} {
		run, err := e.StartRun([]string{"g/a"}, "", "test", "")
		if err != nil {
			t.Fatal(err)
		}
		statuses := map[chain.RunStatus][]string{chain.RunRunning: {"running"}, chain.RunFailed: {"failed"}, chain.RunSucceeded: {"success", "success"}}[want]
		for i, status := range statuses {
			pipeline++
			u := chain.PipelineUpdate{Project: []string{"g/a", "g/b"}[i], Ref: "main", DefaultBranch: "main", PipelineID: pipeline, Status: status, RunID: run.ID}
			if _, err := e.HandlePipeline(u); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := e.Run(run.ID); got.Status != want {
			t.Fatalf("run %s: %s, want %s", run.ID, got.Status, want)
		}
		runs[want] = run.ID
	}
	e.Close()
	for status, code := range map[chain.RunStatus]int{chain.RunRunning: 75, chain.RunFailed: 1, chain.RunSucceeded: 0} {
		out, stderr, got := opsctlEnv(t, nil, "chain", "status", "--state", state, runs[status], "--exit-status")
		if got != code || !strings.Contains(out, "run "+runs[status]+": "+string(status)) || stderr != "" {
			t.Errorf("status of a %s run --exit-status: exit %d, want %d\n%s%s", status, got, code, out, stderr)
		}
		if _, _, got := opsctlEnv(t, nil, "chain", "status", "--state", state, runs[status]); got != 0 {
			t.Errorf("status of a %s run without --exit-status: exit %d, want 0", status, got)
		}
	}
	if _, stderr, code := opsctlEnv(t, nil, "chain", "status", "--state", state, "--exit-status"); code != 2 || !strings.Contains(stderr, "--exit-status goes with RUN") {
		t.Errorf("--exit-status without RUN: exit %d %q, want 2", code, stderr)
	}
}

// Issue 19, item 12: a GitLab host (or receiver) whose name does not
// resolve is a configuration error: exit 1 at once, one line naming the
// host, no retries. The name is under .invalid, which never resolves
// (RFC 6761).
func TestChainHostThatDoesNotResolveIsExit1AtOnce(t *testing.T) {
	var dnsErr *net.DNSError
	if _, err := net.DefaultResolver.LookupHost(context.Background(), "gitlab.example.invalid"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		testenv.Missing(t, fmt.Sprintf("a resolver answering NXDOMAIN for .invalid (got %v)", err))
	}
	source := []string{"--gitlab-url", "https://gitlab.example.invalid", "--group", "img"}
	state := filepath.Join(t.TempDir(), "chain.db")
	for _, args := range [][]string{
		append([]string{"chain", "scan"}, source...),
		append([]string{"chain", "plan"}, source...),
		append([]string{"chain", "hooks", "sync", "--hook-url", "https://h.example/hook"}, source...),
		append([]string{"chain", "trigger", "img/base"}, source...),
		append([]string{"chain", "trigger", "img/base", "--dry-run"}, source...),
		append([]string{"chain", "watch", "--once", "--state", state}, source...),
		append([]string{"chain", "watch", "--state", state}, source...),
		append([]string{"chain", "serve", "--listen", freeAddr(t), "--state", state, "--insecure-no-webhook-secret"}, source...),
	} {
		_, stderr, code := opsctlEnv(t, []string{"GITLAB_TOKEN=" + e2eToken}, args...)
		line := strings.TrimSpace(stderr)
		if code != 1 || strings.Contains(line, "\n") || !strings.HasSuffix(line, "GitLab host gitlab.example.invalid does not resolve (no such host); check --gitlab-url") {
			t.Errorf("%v: exit %d, stderr:\n%s\nwant exit 1 and one line naming the host", args[:3], code, stderr)
		}
	}
	_, stderr, code := opsctlEnv(t, nil, "chain", "status", "--server", "http://receiver.example.invalid:8686")
	if code != 1 || strings.TrimSpace(stderr) != "opsctl: receiver receiver.example.invalid:8686: its host does not resolve (no such host); check --server or OPSCTL_CHAIN_SERVER" {
		t.Errorf("status --server: exit %d, stderr %q", code, stderr)
	}
}

// Issue 15: pkg/chain names its inputs (GitLabConfig.Token, DirSource.Root,
// HookSettings.Token, RegistryDigests.Auth) and the command shows the
// flags, in errors, warnings, dry runs and watch results alike: what the
// user reads is what it was before the package stopped naming flags.
func TestChainMessagesNameTheFlags(t *testing.T) {
	fake := fakeImages(t)
	badToken := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(badToken, []byte("glpat-wrong-token-xyz\n"), 0o600)
	_, stderr, _ := opsctlEnv(t, nil, "chain", "scan", "--gitlab-url", fake.URL(), "--group", "img", "--token-file", badToken)
	if !strings.HasSuffix(strings.TrimSpace(stderr), "; check the token of --token-file or GITLAB_TOKEN (expired or revoked?)") {
		t.Errorf("401: stderr %q", stderr)
	}

	dir := writeFiles(t, map[string]string{"Containerfile": "FROM debian\n", "g/a/Containerfile": "FROM debian\n"})
	_, stderr, code := opsctlEnv(t, nil, "chain", "scan", "--dir", dir)
	if want := "warning: --dir " + dir + ": the folder itself holds a project file; only its subfolders are projects\n"; code != 0 || stderr != want {
		t.Errorf("a project file at the root: exit %d, stderr %q, want %q", code, stderr, want)
	}

	fake.AddHook("img/base", fakegitlab.Hook{URL: "https://chain.example.com/hook", PipelineEvents: true, Token: "old", AlertStatus: "disabled"})
	out, stderr, code := opsctlEnv(t, []string{"GITLAB_TOKEN=" + e2eToken}, "chain", "hooks", "sync", "--gitlab-url", fake.URL(), "--group", "img",
		"--hook-url", "https://chain.example.com/hook", "--dry-run")
	if code != 0 || !strings.Contains(out, "GitLab disabled it after failed deliveries: give --webhook-secret-file to replace it") {
		t.Errorf("dry run with a disabled hook and no secret: exit %d\n%s%s", code, out, stderr)
	}

	fx := newWatchFixture(t, true)
	res, _, code := fx.watch(t)
	if code != 75 || len(res.Errors) == 0 || !strings.Contains(res.Errors[0], "registry refused access (401): check --registry-auth-file") {
		t.Errorf("a registry refusing anonymous access: exit %d, errors %q", code, res.Errors)
	}
}
