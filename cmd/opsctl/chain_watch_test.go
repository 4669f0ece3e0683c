package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/opsctl/opsctl/internal/fakegitlab"
	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/chain"
)

// testRegistry is go-containerregistry's in-process OCI registry, with an
// optional bearer-token challenge and a log of the manifests asked for.
type testRegistry struct {
	srv  *httptest.Server
	host string
	mu   sync.Mutex
	// asked counts manifest requests by repository:reference.
	asked map[string]int
	// bearer: demand a token, issued for user:pass by /token.
	bearer     bool
	user, pass string
}

func newTestRegistry(t *testing.T, bearer bool) *testRegistry {
	r := &testRegistry{asked: map[string]int{}, bearer: bearer, user: "robot", pass: "pa55-word"}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/token" {
			u, p, ok := req.BasicAuth()
			if !ok || u != r.user || p != r.pass {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"token": "good-token"})
			return
		}
		if r.bearer && req.Method != http.MethodPut && req.Method != http.MethodPost && req.Method != http.MethodPatch &&
			req.Header.Get("Authorization") != "Bearer good-token" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test",scope="repository:library/debian:pull"`, r.srv.URL))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if i := strings.Index(req.URL.Path, "/manifests/"); i >= 0 && (req.Method == http.MethodHead || req.Method == http.MethodGet) {
			r.mu.Lock()
			r.asked[strings.TrimPrefix(req.URL.Path[:i], "/v2/")+":"+req.URL.Path[i+len("/manifests/"):]]++
			r.mu.Unlock()
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// pushImage pushes a new random image (or a two-platform index) under
// repo:tag and returns its digest.
func (r *testRegistry) push(t *testing.T, repoTag string, index bool) string {
	t.Helper()
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass})
	if index {
		idx, err := random.Index(256, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(ref, idx, auth); err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		return d.String()
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, auth); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func (r *testRegistry) askedFor(ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[ref]
}

type watchFixture struct {
	fake   *fakegitlab.Server
	ci     *fakeCI
	reg    *testRegistry
	args   []string
	pinned string
	// debian is the digest library/debian:bookworm has when the fixture starts.
	debian string
}

// newWatchFixture: img/base builds FROM the registry's library/debian
// tag, img/tools FROM a multi-arch index, img/pinned FROM a digest;
// img/app builds on img/base.
func newWatchFixture(t *testing.T, bearer bool) *watchFixture {
	reg := newTestRegistry(t, bearer)
	fx := &watchFixture{reg: reg}
	fx.debian = reg.push(t, "library/debian:bookworm", false)
	reg.push(t, "tools/multi:1", true)
	fx.pinned = reg.push(t, "library/pinned:1", false)
	fake := fakegitlab.New()
	t.Cleanup(fake.Close)
	fake.AddToken(e2eToken, "api")
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/base", Files: map[string]string{"Containerfile": "ARG SUITE=bookworm\nFROM " + reg.host + "/library/debian:${SUITE}\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/tools", Files: map[string]string{"Containerfile": "FROM " + reg.host + "/tools/multi:1 AS b\nFROM b\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/pinned", Files: map[string]string{"Containerfile": "FROM " + reg.host + "/library/pinned@" + fx.pinned + "\n"}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/app", Files: map[string]string{".gitlab-deps": "img/base\n"}})
	fx.fake, fx.ci = fake, newFakeCI(t, fake)
	dir := t.TempDir()
	tokenFile := credentialFile(t, dir, "token", e2eToken+"\n")
	fx.args = []string{"chain", "watch", "--once", "--state", filepath.Join(dir, "watch.db"), "-o", "json",
		"--gitlab-url", fake.URL(), "--group", "img", "--token-file", tokenFile, "--plain-http-registry", reg.host}
	return fx
}

func (fx *watchFixture) watch(t *testing.T, extra ...string) (chain.WatchResult, string, int) {
	t.Helper()
	out, stderr, code := opsctlEnv(t, nil, append(fx.args, extra...)...)
	var res chain.WatchResult
	if code == 0 || code == 75 {
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("watch output is not JSON: %v\n%s\n%s", err, out, stderr)
		}
	}
	return res, stderr, code
}

func TestChainWatchTriggersOnceWhenABaseImageChanges(t *testing.T) {
	fx := newWatchFixture(t, false)
	res, stderr, code := fx.watch(t)
	if code != 0 || res.Checked != 2 || len(res.Changed) != 0 || len(res.Errors) != 0 {
		t.Fatalf("first watch: exit %d %+v\n%s", code, res, stderr)
	}
	if n := len(fx.ci.pl.All()); n != 0 {
		t.Fatalf("the first sighting triggered %d pipelines", n)
	}
	// Two pushes between two watches: one change, from the digest the
	// first watch saw to the last one; the one in between was never seen.
	between := fx.reg.push(t, "library/debian:bookworm", false)
	newDigest := fx.reg.push(t, "library/debian:bookworm", false)
	res, stderr, code = fx.watch(t)
	if code != 0 || len(res.Changed) != 1 {
		t.Fatalf("after the push: exit %d %+v\n%s", code, res, stderr)
	}
	c := res.Changed[0]
	if c.Image != fx.reg.host+"/library/debian:bookworm" || c.New != newDigest || c.Old != fx.debian || c.Old == between || fmt.Sprint(c.Triggered) != "[img/base]" || c.Run == "" {
		t.Errorf("change %+v", c)
	}
	if got := fx.ci.apiPipelines(); fmt.Sprint(got) != "map[img/base:1]" {
		t.Errorf("pipelines %v, want one of img/base", got)
	}
	for _, p := range fx.ci.pl.All() {
		if len(p.Variables) != 1 || p.Variables[0].Value != c.Run {
			t.Errorf("pipeline of %s carries %v, want %s=%s", p.Project, p.Variables, chain.RunVariable, c.Run)
		}
	}
	// Nothing changed since: nothing more.
	res, _, code = fx.watch(t)
	if code != 0 || len(res.Changed) != 0 || len(fx.ci.pl.All()) != 1 {
		t.Errorf("third watch: exit %d %+v, %d pipelines", code, res, len(fx.ci.pl.All()))
	}
	if n := fx.reg.askedFor("library/pinned:" + fx.pinned); n != 0 {
		t.Errorf("the digest-pinned image was sent to the registry %d times", n)
	}
	// A new index (multi-arch) under the same tag is a change of its own digest.
	fx.reg.push(t, "tools/multi:1", true)
	res, _, code = fx.watch(t, "--dry-run")
	if code != 0 || len(res.Changed) != 1 || fmt.Sprint(res.Changed[0].Triggered) != "[img/tools]" || res.Changed[0].Run != "" {
		t.Errorf("dry run after the index push: exit %d %+v", code, res)
	}
	if n := len(fx.ci.pl.All()); n != 1 {
		t.Errorf("--dry-run triggered pipelines (%d)", n)
	}
	res, _, _ = fx.watch(t)
	if len(res.Changed) != 1 || fx.ci.apiPipelines()["img/tools"] != 1 {
		t.Errorf("after the dry run the change was not acted on: %+v %v", res, fx.ci.apiPipelines())
	}
}

func TestChainWatchWithBearerTokenRegistry(t *testing.T) {
	fx := newWatchFixture(t, true)
	res, _, code := fx.watch(t)
	if code != 75 || len(res.Errors) != 2 || !strings.Contains(strings.Join(res.Errors, "\n"), "401") {
		t.Fatalf("anonymous against a token registry: exit %d %+v", code, res)
	}
	auth := filepath.Join(t.TempDir(), "config.json")
	cred := base64.StdEncoding.EncodeToString([]byte(fx.reg.user + ":" + fx.reg.pass))
	os.WriteFile(auth, []byte(`{"auths":{"`+fx.reg.host+`":{"auth":"`+cred+`"}}}`), 0o600)
	res, stderr, code := fx.watch(t, "--registry-auth-file", auth)
	if code != 0 || len(res.Errors) != 0 || res.Checked != 2 {
		t.Fatalf("with credentials: exit %d %+v %s", code, res, stderr)
	}
	if strings.Contains(stderr, fx.reg.pass) {
		t.Error("the registry password was logged")
	}
	fx.reg.push(t, "library/debian:bookworm", false)
	res, _, code = fx.watch(t, "--registry-auth-file", auth)
	if code != 0 || len(res.Changed) != 1 || fx.ci.apiPipelines()["img/base"] != 1 {
		t.Errorf("change behind a token: exit %d %+v %v", code, res, fx.ci.apiPipelines())
	}
}

func TestChainWatchRegistryDownIsAnErrorNeverATrigger(t *testing.T) {
	fx := newWatchFixture(t, false)
	if _, _, code := fx.watch(t); code != 0 {
		t.Fatal("first watch failed")
	}
	fx.reg.push(t, "library/debian:bookworm", false)
	fx.reg.srv.Close()
	res, _, code := fx.watch(t)
	if code != 75 || len(res.Errors) != 2 || len(res.Changed) != 0 || len(fx.ci.pl.All()) != 0 {
		t.Fatalf("registry down: exit %d %+v, %d pipelines", code, res, len(fx.ci.pl.All()))
	}
}

func TestChainWatchCrashBetweenRecordAndTrigger(t *testing.T) {
	fx := newWatchFixture(t, false)
	fx.watch(t)
	fx.reg.push(t, "library/debian:bookworm", false)
	_, _, code := opsctlEnv(t, []string{"OPSCTL_CHAIN_CRASH_AT=queued:1"}, fx.args...)
	if code != -1 {
		t.Fatalf("exit %d, want SIGKILL at the crash point", code)
	}
	if n := len(fx.ci.pl.All()); n != 0 {
		t.Fatalf("%d pipelines before the restart", n)
	}
	res, _, code := fx.watch(t)
	if code != 0 || len(res.Changed) != 0 {
		t.Errorf("after the crash: exit %d %+v (the change was recorded with its run)", code, res)
	}
	if got := fx.ci.apiPipelines(); fmt.Sprint(got) != "map[img/base:1]" {
		t.Errorf("pipelines %v, want exactly one of img/base", got)
	}
	fx.watch(t)
	if got := fx.ci.apiPipelines(); fmt.Sprint(got) != "map[img/base:1]" {
		t.Errorf("pipelines %v after one more check", got)
	}
}

// TestChainWatchPrunesTheRunsItHandedOver: the runs watch starts stay
// "running" in its own state (a receiver continues them): once their
// pipelines are created they count as ended for --retention-runs.
func TestChainWatchPrunesTheRunsItHandedOver(t *testing.T) {
	fx := newWatchFixture(t, false)
	if _, stderr, code := fx.watch(t); code != 0 {
		t.Fatalf("first watch: exit %d\n%s", code, stderr)
	}
	var started []string
	for i := range 3 {
		fx.reg.push(t, "library/debian:bookworm", false)
		var extra []string
		if i == 2 {
			extra = []string{"--retention-runs", "1"}
		}
		res, stderr, code := fx.watch(t, extra...)
		if code != 0 || len(res.Changed) != 1 || res.Changed[0].Run == "" {
			t.Fatalf("watch %d: exit %d %+v\n%s", i+2, code, res, stderr)
		}
		started = append(started, res.Changed[0].Run)
		if want := i == 2; strings.Contains(stderr, `msg="old runs pruned" removed=2`) != want {
			t.Errorf("watch %d: pruned two runs %v, want %v:\n%s", i+2, !want, want, stderr)
		}
	}
	state := fx.args[slices.Index(fx.args, "--state")+1]
	out, stderr, code := opsctlEnv(t, nil, "chain", "status", "--state", state, "-o", "json")
	var runs []chain.Run
	if err := json.Unmarshal([]byte(out), &runs); code != 0 || err != nil || len(runs) != 1 || runs[0].ID != started[2] {
		t.Errorf("runs kept: exit %d %v %s%s; want only %s", code, err, out, stderr, started[2])
	}
	if got := fx.ci.apiPipelines(); got["img/base"] != 3 {
		t.Errorf("pipelines %v, want 3 of img/base", got)
	}
}

func TestChainWatchBadInput(t *testing.T) {
	fx := newWatchFixture(t, false)
	bad := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(bad, []byte(`{"auths":{"r.example:5000":{"auth":"!!notbase64"}}}`), 0o600)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		// A file that is there but wrong is a failure; one that is not
		// there, or not a file, a usage error (the common rule).
		{[]string{"--registry-auth-file", bad}, 1, `auths "r.example:5000": auth is not base64`},
		{[]string{"--registry-auth-file", bad + ".missing"}, 2, "--registry-auth-file " + bad + ".missing: no such file"},
		{[]string{"--registry-auth-file", filepath.Dir(bad)}, 2, "a folder; expected a regular file"},
		{[]string{"--plain-http-registry", "http://x/"}, 2, "--plain-http-registry"},
		{[]string{"--interval", "-1s"}, 2, "--interval"},
		{[]string{"--retention-days", "-1"}, 2, "--retention-days -1: expected a number of days from 0"},
		{[]string{"--retention-runs", "-5"}, 2, "--retention-runs -5: expected 0 (no count limit) or more"},
	} {
		_, stderr, code := opsctlEnv(t, nil, append(fx.args, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d (want %d) %q", tc.args, code, tc.code, stderr)
		}
	}
}

func TestChainServeWatchExternalRebuildsTheChain(t *testing.T) {
	fx := newWatchFixture(t, false)
	addr := freeAddr(t)
	dir := t.TempDir()
	secretFile := credentialFile(t, dir, "secret", e2eSecret)
	for _, p := range []string{"img/base", "img/app", "img/tools", "img/pinned"} {
		fx.fake.AddHook(p, fakegitlab.Hook{URL: "http://" + addr + "/hook", PipelineEvents: true, Token: e2eSecret})
	}
	tokenFile := fx.args[slices.Index(fx.args, "--token-file")+1]
	recv := &receiverProc{t: t, addr: addr, stderr: &testenv.SyncBuffer{}, args: []string{"chain", "serve", "--listen", addr,
		"--state", filepath.Join(dir, "chain.db"), "--webhook-secret-file", secretFile, "--watch-external", "300ms",
		"--plain-http-registry", fx.reg.host, "--gitlab-url", fx.fake.URL(), "--group", "img", "--token-file", tokenFile}}
	recv.start()
	defer recv.kill()
	// Let the first check record the digests, then change one.
	testenv.WaitUntil(t, 20*time.Second, func() bool { return strings.Contains(recv.stderr.String(), "external images checked") })
	fx.reg.push(t, "library/debian:bookworm", false)
	recv.waitOneRunSucceeded(t, 20*time.Second)
	if got := fx.ci.apiPipelines(); fmt.Sprint(got) != "map[img/app:1 img/base:1]" {
		t.Fatalf("pipelines %v, want img/base then img/app once\n%s", got, recv.stderr)
	}
}

// TestChainWatchOnceWhenGitLabFailsTheTrigger: a change whose pipelines
// could not be created is a temporary failure (75), and a later check
// creates them, once.
func TestChainWatchOnceWhenGitLabFailsTheTrigger(t *testing.T) {
	fx := newWatchFixture(t, false)
	if _, _, code := fx.watch(t); code != 0 {
		t.Fatal("first watch failed")
	}
	fx.reg.push(t, "library/debian:bookworm", false)
	fx.fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/pipeline", Status: 500})
	res, stderr, code := fx.watch(t)
	if code != 75 || len(res.Changed) != 1 || res.Changed[0].Run == "" || len(fx.ci.pl.All()) != 0 || !strings.Contains(stderr, "not created yet") {
		t.Fatalf("GitLab failing the trigger: exit %d %+v, %d pipelines\n%s", code, res, len(fx.ci.pl.All()), stderr)
	}
	fx.fake.ClearFaults()
	// The failed trigger is retried after its backoff (2 s).
	testenv.WaitUntil(t, 30*time.Second, func() bool {
		res, stderr, code = fx.watch(t)
		return code == 0
	})
	if code != 0 || len(res.Changed) != 0 {
		t.Fatalf("after GitLab recovered: exit %d %+v\n%s", code, res, stderr)
	}
	if got := fx.ci.apiPipelines(); fmt.Sprint(got) != "map[img/base:1]" {
		t.Errorf("pipelines %v, want exactly one of img/base", got)
	}
}

// TestChainWatchKeepsWatchingWhenGitLabFailsACheck: without --once, a
// check that GitLab failed is logged and the next one runs.
func TestChainWatchKeepsWatchingWhenGitLabFailsACheck(t *testing.T) {
	fx := newWatchFixture(t, false)
	// The first scan's attempts (1 + 5 retries) all fail.
	fx.fake.InjectFault(fakegitlab.Fault{Path: "/api/v4/groups/img", Status: 503, RetryAfter: "0", Times: 6})
	args := slices.DeleteFunc(slices.Clone(fx.args), func(a string) bool { return a == "--once" })
	stdout, stderr := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	proc := startOpsctl(t, stdout, stderr, nil, append(args, "--interval", "100ms")...)
	testenv.WaitUntil(t, 30*time.Second, func() bool {
		if proc.hasExited() {
			t.Fatalf("the watcher ended: %v\n%s", proc.cmd.ProcessState, stderr)
		}
		return strings.Contains(stdout.String(), `"checked": 2`)
	})
	if !strings.Contains(stdout.String(), `"checked": 2`) || !strings.Contains(stderr.String(), "check failed") {
		t.Fatalf("no check after the failed one:\n%s\n%s", stdout, stderr)
	}
}

// TestChainWatchOnceWithAReceiverBuildsASharedDownstreamOnce: an image
// used by two projects starts one run with two roots in `watch --once`;
// the receiver adopts that run from the first root's success with both
// roots, so the project below both is built once, after both.
func TestChainWatchOnceWithAReceiverBuildsASharedDownstreamOnce(t *testing.T) {
	reg := newTestRegistry(t, false)
	reg.push(t, "library/debian:bookworm", false)
	fake := fakegitlab.New()
	t.Cleanup(fake.Close)
	fake.AddToken(e2eToken, "api")
	from := "FROM " + reg.host + "/library/debian:bookworm\n"
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/ruby", Files: map[string]string{"Containerfile": from}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/python", Files: map[string]string{"Containerfile": from}})
	fake.AddProject(fakegitlab.ProjectSpec{Path: "img/app", Files: map[string]string{".gitlab-deps": "img/ruby\nimg/python\n"}})
	ci := newFakeCI(t, fake)
	dir := t.TempDir()
	tokenFile := credentialFile(t, dir, "token", e2eToken)
	secretFile := credentialFile(t, dir, "secret", e2eSecret)
	source := []string{"--gitlab-url", fake.URL(), "--group", "img", "--token-file", tokenFile}
	addr := freeAddr(t)
	for _, p := range []string{"img/ruby", "img/python", "img/app"} {
		fake.AddHook(p, fakegitlab.Hook{URL: "http://" + addr + "/hook", PipelineEvents: true, Token: e2eSecret})
	}
	recv := &receiverProc{t: t, addr: addr, stderr: &testenv.SyncBuffer{}, args: append([]string{"chain", "serve", "--listen", addr,
		"--state", filepath.Join(dir, "chain.db"), "--webhook-secret-file", secretFile}, source...)}
	recv.start()
	defer recv.kill()

	watch := append([]string{"chain", "watch", "--once", "--state", filepath.Join(dir, "watch.db"), "-o", "json",
		"--plain-http-registry", reg.host}, source...)
	if _, stderr, code := opsctlEnv(t, nil, watch...); code != 0 {
		t.Fatalf("first watch: exit %d %s", code, stderr)
	}
	reg.push(t, "library/debian:bookworm", false)
	out, stderr, code := opsctlEnv(t, nil, watch...)
	if code != 0 || !strings.Contains(out, `"img/python"`) || !strings.Contains(out, `"img/ruby"`) {
		t.Fatalf("watch after the push: exit %d\n%s%s", code, out, stderr)
	}
	recv.waitOneRunSucceeded(t, 30*time.Second)
	runs := recv.runs(t)
	if len(runs) != 1 || runs[0].Status != chain.RunSucceeded || len(runs[0].Roots) != 2 {
		t.Fatalf("receiver runs: %+v\n%s", runs, recv.stderr)
	}
	if got := ci.apiPipelines(); fmt.Sprint(got) != "map[img/app:1 img/python:1 img/ruby:1]" {
		t.Errorf("pipelines %v, want each project once", got)
	}
	var app fakegitlab.Pipeline
	finished := map[string]time.Time{}
	for _, p := range ci.pl.All() {
		if p.Project == "img/app" {
			app = p
		} else {
			finished[p.Project] = p.UpdatedAt
		}
	}
	for _, up := range []string{"img/ruby", "img/python"} {
		if !app.CreatedAt.After(finished[up]) {
			t.Errorf("app created before %s succeeded", up)
		}
	}
}

// Every command: --dry-run changes nothing, and that includes not
// creating the state file on the first check. It validates as the real run
// does: a state file in a folder that does not exist is a usage error for
// both.
func TestChainWatchDryRunCreatesNoStateFile(t *testing.T) {
	fx := newWatchFixture(t, false)
	state := filepath.Join(t.TempDir(), "watch.db")
	args := append(append([]string{}, fx.args...), "--state", state, "--dry-run")
	out, stderr, code := opsctlEnv(t, nil, args...)
	var res chain.WatchResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Checked != 2 {
		t.Fatalf("dry run on a new state file: exit %d\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("--dry-run created %s (stat: %v)", state, err)
	}
	inMissingFolder := filepath.Join(t.TempDir(), "sub", "watch.db")
	for _, dry := range [][]string{{"--dry-run"}, nil} {
		args := append(append(append([]string{}, fx.args...), "--state", inMissingFolder), dry...)
		_, stderr, code := opsctlEnv(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, "folder "+filepath.Dir(inMissingFolder)+" does not exist") {
			t.Errorf("%v in a missing folder: exit %d %q, want 2", dry, code, stderr)
		}
	}
	if _, err := os.Stat(filepath.Dir(inMissingFolder)); !os.IsNotExist(err) {
		t.Errorf("watch created %s (stat: %v)", filepath.Dir(inMissingFolder), err)
	}
	// On an existing state file, a dry run reads it and changes nothing.
	if _, _, code := fx.watch(t); code != 0 {
		t.Fatal("first watch failed")
	}
	stateFile := fx.args[4]
	before, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	fx.reg.push(t, "library/debian:bookworm", false)
	res, stderr, code = fx.watch(t, "--dry-run")
	if code != 0 || len(res.Changed) != 1 || res.Changed[0].Run != "" {
		t.Fatalf("dry run after a push: exit %d %+v\n%s", code, res, stderr)
	}
	after, _ := os.ReadFile(stateFile)
	if !bytes.Equal(before, after) {
		t.Error("--dry-run changed the state file")
	}
}
