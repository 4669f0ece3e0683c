package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/fakegitlab"
	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/chain"
)

// fakeCI plays GitLab's runners: every pipeline created through the API
// runs and succeeds, and GitLab delivers its Pipeline Hook to the
// project's hooks. A delivery that got no answer (the receiver was killed)
// is repeated until one arrives, as a test stand-in for "no event lost
// while it was acknowledged".
type fakeCI struct {
	t    *testing.T
	pl   *fakegitlab.Pipelines
	fail map[string]bool // projects whose API pipelines fail
	wg   sync.WaitGroup
	stop chan struct{}
}

func newFakeCI(t *testing.T, fake *fakegitlab.Server) *fakeCI {
	ci := &fakeCI{t: t, pl: fakegitlab.NewPipelines(fake), fail: map[string]bool{}, stop: make(chan struct{})}
	ci.pl.OnCreate = func(p fakegitlab.Pipeline) {
		status := "success"
		if ci.fail[p.Project] {
			status = "failed"
		}
		ci.build(p.ID, status)
	}
	t.Cleanup(func() {
		close(ci.stop)
		ci.wg.Wait()
	})
	return ci
}

func (ci *fakeCI) build(id int64, final string) {
	ci.wg.Add(1)
	go func() {
		defer ci.wg.Done()
		for _, status := range []string{"running", final} {
			ci.deliver(id, status)
		}
	}()
}

func (ci *fakeCI) deliver(id int64, status string) {
	testenv.WaitUntil(ci.t, 60*time.Second, func() bool {
		select {
		case <-ci.stop:
			return true
		default:
		}
		codes, err := ci.pl.SetStatus(id, status)
		ok := err == nil
		for _, c := range codes {
			if c >= 300 {
				ok = false
			}
		}
		return ok
	})
}

// apiPipelines counts the pipelines created through the API per project.
func (ci *fakeCI) apiPipelines() map[string]int {
	n := map[string]int{}
	for _, p := range ci.pl.All() {
		if p.Source == "api" {
			n[p.Project]++
		}
	}
	return n
}

// credentialFile writes content (a token, a secret) to the file name in
// dir, as an admin would, and returns its path.
func credentialFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// opsctlProc is the opsctl binary running in the background; the test's
// end kills it.
type opsctlProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startOpsctl starts opsctl with args, GITLAB_TOKEN emptied and env added,
// writing to stdout and stderr (nil: discarded).
func startOpsctl(t *testing.T, stdout, stderr io.Writer, env []string, args ...string) *opsctlProc {
	t.Helper()
	cmd := exec.Command(testenv.Opsctl(t), args...)
	cmd.Env = append(append(os.Environ(), "GITLAB_TOKEN="), env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &opsctlProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

func (p *opsctlProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// hasExited: the process has ended.
func (p *opsctlProc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *opsctlProc) waitExit(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// receiverProc is `chain serve` on addr, started (and started again) by
// the test.
type receiverProc struct {
	*opsctlProc // the running one
	t           *testing.T
	addr        string
	args        []string
	stderr      *testenv.SyncBuffer
}

func (r *receiverProc) url() string { return "http://" + r.addr }

// start runs `chain serve` with extra environment and waits until it
// answers /healthz, or it exited (a crash point may kill it early).
func (r *receiverProc) start(env ...string) {
	r.t.Helper()
	r.opsctlProc = startOpsctl(r.t, nil, r.stderr, env, r.args...)
	up := func() bool {
		if r.hasExited() {
			return true
		}
		resp, err := http.Get(r.url() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	if !testenv.WaitUntil(r.t, 15*time.Second, up) {
		r.t.Fatalf("receiver did not come up:\n%s", r.stderr)
	}
}

func (r *receiverProc) runs(t *testing.T) []chain.Run {
	t.Helper()
	resp, err := http.Get(r.url() + "/runs")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var runs []chain.Run
	json.NewDecoder(resp.Body).Decode(&runs)
	return runs
}

// chainE2E is the fake GitLab group of fakeImages with pipelines, hooks
// installed by `chain hooks sync`, and a receiver ready to start.
type chainE2E struct {
	fake   *fakegitlab.Server
	ci     *fakeCI
	recv   *receiverProc
	source []string
	secret string
}

func newChainE2E(t *testing.T) *chainE2E {
	return newChainE2EOn(t, fakeImages(t), "img")
}

// newChainE2EOn is newChainE2E on the projects of group in fake.
func newChainE2EOn(t *testing.T, fake *fakegitlab.Server, group string) *chainE2E {
	dir := t.TempDir()
	tokenFile := credentialFile(t, dir, "token", e2eToken+"\n")
	secretFile := credentialFile(t, dir, "secret", e2eSecret+"\n")
	e := &chainE2E{fake: fake, ci: newFakeCI(t, fake), secret: secretFile,
		source: []string{"--gitlab-url", fake.URL(), "--group", group, "--token-file", tokenFile}}
	addr := freeAddr(t)
	args := append([]string{"chain", "hooks", "sync", "--hook-url", "http://" + addr + "/hook", "--webhook-secret-file", secretFile}, e.source...)
	if _, stderr, code := opsctlEnv(t, nil, args...); code != 0 {
		t.Fatalf("hooks sync: exit %d: %s", code, stderr)
	}
	e.recv = &receiverProc{t: t, addr: addr, stderr: &testenv.SyncBuffer{},
		args: append([]string{"chain", "serve", "--listen", addr, "--state", filepath.Join(dir, "chain.db"),
			"--webhook-secret-file", secretFile, "--log-level", "debug"}, e.source...)}
	t.Cleanup(func() {
		// After the receiver was killed: cleanups run last first.
		for _, s := range []string{e2eToken, e2eSecret} {
			if strings.Contains(e.recv.stderr.String(), s) {
				t.Errorf("the receiver logged a secret")
			}
		}
	})
	return e
}

// waitRunSucceeded waits until the receiver reports one succeeded run.
func (e *chainE2E) waitRunSucceeded(t *testing.T) chain.Run {
	t.Helper()
	if !e.recv.waitOneRunSucceeded(t, 60*time.Second) {
		t.Fatalf("no succeeded run; runs %+v\nreceiver log:\n%s", e.recv.runs(t), e.recv.stderr)
	}
	return e.recv.runs(t)[0]
}

// waitOneRunSucceeded waits until the receiver reports one run, succeeded,
// and says whether it did within d.
func (r *receiverProc) waitOneRunSucceeded(t *testing.T, d time.Duration) bool {
	t.Helper()
	return testenv.WaitUntil(t, d, func() bool {
		runs := r.runs(t)
		return len(runs) == 1 && runs[0].Status == chain.RunSucceeded
	})
}

func wantEachDownstreamOnce(t *testing.T, ci *fakeCI) {
	t.Helper()
	got := ci.apiPipelines()
	want := map[string]int{"img/lang/ruby": 1, "img/lang/python": 1, "img/app": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pipelines created through the API: %v, want %v", got, want)
	}
}

func TestChainServeRebuildsTheChainInOrder(t *testing.T) {
	e := newChainE2E(t)
	e.recv.start()
	base := e.ci.pl.Start("img/base", "main", "schedule")
	e.ci.build(base, "success")
	run := e.waitRunSucceeded(t)
	wantEachDownstreamOnce(t, e.ci)
	if want := [][]string{{"img/base"}, {"img/lang/python", "img/lang/ruby"}, {"img/app"}}; fmt.Sprint(run.Waves) != fmt.Sprint(want) {
		t.Errorf("waves %v, want %v", run.Waves, want)
	}
	// app was created only after ruby and python succeeded.
	var app fakegitlab.Pipeline
	finished := map[string]time.Time{}
	for _, p := range e.ci.pl.All() {
		if p.Project == "img/app" {
			app = p
		} else {
			finished[p.Project] = p.UpdatedAt
		}
	}
	for _, up := range []string{"img/lang/ruby", "img/lang/python"} {
		if !app.CreatedAt.After(finished[up]) {
			t.Errorf("app created at %v, before %s succeeded at %v", app.CreatedAt, up, finished[up])
		}
	}
	for _, p := range e.ci.pl.All() {
		if p.Source == "api" && (len(p.Variables) != 1 || p.Variables[0].Key != chain.RunVariable || p.Variables[0].Value != run.ID) {
			t.Errorf("pipeline %d of %s has variables %v, want %s=%s", p.ID, p.Project, p.Variables, chain.RunVariable, run.ID)
		}
	}

	// Status, from the receiver.
	out, stderr, code := opsctlEnv(t, nil, "chain", "status", "--server", e.recv.url())
	if code != 0 || !strings.Contains(out, run.ID) || !strings.Contains(out, "succeeded") {
		t.Errorf("chain status: exit %d\n%s%s", code, out, stderr)
	}
	out, _, code = opsctlEnv(t, nil, "chain", "status", "--server", e.recv.url(), run.ID, "-o", "json")
	var got chain.Run
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Steps["img/app"].State != chain.StepSucceeded {
		t.Errorf("chain status RUN -o json: exit %d\n%s", code, out)
	}
	resp, err := http.Get(e.recv.url() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`opsctl_chain_webhook_events_total{event="Pipeline Hook",result="accepted"}`,
		`opsctl_chain_triggers_total{result="created"} 3`,
		`opsctl_chain_gitlab_api_errors_total 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// SIGTERM stops it cleanly.
	e.recv.cmd.Process.Signal(os.Interrupt)
	if !e.recv.waitExit(10 * time.Second) {
		t.Fatal("receiver did not stop on SIGINT")
	}
	if code := e.recv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("receiver exit %d after SIGINT", code)
	}
}

// TestChainServeSurvivesSIGKILL kills the receiver at each point of the
// trigger path, restarts it on the same state file, and checks on the fake
// GitLab's pipelines that every downstream project was triggered exactly
// once.
func TestChainServeSurvivesSIGKILL(t *testing.T) {
	points := []string{"queued:1", "attempted:1", "created:1", "attempted:2", "created:2", "queued:2", "attempted:3", "created:3"}
	for _, point := range points {
		t.Run(strings.Replace(point, ":", "-", 1), func(t *testing.T) {
			e := newChainE2E(t)
			e.recv.start("OPSCTL_CHAIN_CRASH_AT=" + point)
			base := e.ci.pl.Start("img/base", "main", "schedule")
			e.ci.build(base, "success")
			if !e.recv.waitExit(30 * time.Second) {
				t.Fatalf("the receiver did not crash at %s:\n%s", point, e.recv.stderr)
			}
			if e.recv.cmd.ProcessState.ExitCode() != -1 {
				t.Fatalf("receiver ended with %v, not SIGKILL", e.recv.cmd.ProcessState)
			}
			e.recv.start()
			e.waitRunSucceeded(t)
			wantEachDownstreamOnce(t, e.ci)
		})
	}
	t.Run("random-kills", func(t *testing.T) {
		e := newChainE2E(t)
		e.recv.start()
		base := e.ci.pl.Start("img/base", "main", "schedule")
		e.ci.build(base, "success")
		for i := 0; i < 6; i++ {
			time.Sleep(time.Duration(15+i*10) * time.Millisecond)
			e.recv.kill()
			e.recv.start()
		}
		e.waitRunSucceeded(t)
		wantEachDownstreamOnce(t, e.ci)
	})
}

func TestChainFailureStopsDownstreamUntilTheProjectSucceeds(t *testing.T) {
	e := newChainE2E(t)
	e.ci.fail["img/lang/ruby"] = true
	e.recv.start()
	base := e.ci.pl.Start("img/base", "main", "schedule")
	e.ci.build(base, "success")
	testenv.WaitUntil(t, 30*time.Second, func() bool {
		runs := e.recv.runs(t)
		return len(runs) == 1 && runs[0].Status == chain.RunFailed && runs[0].Steps["img/lang/python"].State == chain.StepSucceeded
	})
	runs := e.recv.runs(t)
	if len(runs) != 1 || runs[0].Status != chain.RunFailed || runs[0].Steps["img/lang/ruby"].State != chain.StepFailed ||
		runs[0].Steps["img/lang/python"].State != chain.StepSucceeded || runs[0].Steps["img/app"].State == chain.StepSucceeded {
		t.Fatalf("after ruby failed: runs %+v, want one failed run, ruby failed, python succeeded, app waiting\n%s", runs, e.recv.stderr)
	}
	if n := e.ci.apiPipelines()["img/app"]; n != 0 {
		t.Fatalf("app triggered %d times although ruby failed", n)
	}
	// The admin fixes ruby and runs its pipeline again by hand.
	e.ci.fail["img/lang/ruby"] = false
	manual := e.ci.pl.Start("img/lang/ruby", "main", "web")
	e.ci.build(manual, "success")
	e.waitRunSucceeded(t)
	if got := e.ci.apiPipelines(); got["img/app"] != 1 || got["img/lang/ruby"] != 1 {
		t.Errorf("pipelines after the resume: %v", got)
	}
}

func TestChainServeRetriesGitLabErrors(t *testing.T) {
	e := newChainE2E(t)
	e.fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/pipeline", Status: 429, RetryAfter: "1", Times: 1})
	e.fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/pipeline", Status: 502, Times: 1})
	e.recv.start()
	base := e.ci.pl.Start("img/base", "main", "schedule")
	e.ci.build(base, "success")
	e.waitRunSucceeded(t)
	wantEachDownstreamOnce(t, e.ci)
	// After the 502 (the create may have been made), the next create of that
	// project comes after a look at its pipelines.
	calls := e.fake.Calls()
	failed := slices.IndexFunc(calls, func(c fakegitlab.Call) bool {
		return c.Method == "POST" && strings.HasSuffix(c.Path, "/pipeline") && c.Status == 502
	})
	if failed < 0 {
		t.Fatalf("no create answered 502: %+v", calls)
	}
	project := strings.TrimSuffix(calls[failed].Path, "/pipeline")
	lookedFor := false
	for _, c := range calls[failed+1:] {
		if c.Method == "GET" && c.Path == project+"/pipelines" {
			lookedFor = true
		}
		if c.Method == "POST" && c.Path == project+"/pipeline" {
			break
		}
	}
	if !lookedFor {
		t.Errorf("after a 502 on create (%s), the engine did not look for the pipeline before creating it again", calls[failed].Path)
	}
}

// TestChainServeWithASlowGitLab: webhooks are answered at once while the
// API is slow, and a create that times out is looked for, then made, once.
func TestChainServeWithASlowGitLab(t *testing.T) {
	e := newChainE2E(t)
	e.recv.args = append(e.recv.args, "--api-timeout", "300ms")
	e.recv.start()
	e.fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/pipeline", Delay: 2 * time.Second, Times: 1})
	e.fake.SetLatency(100 * time.Millisecond)
	base := e.ci.pl.Start("img/base", "main", "schedule")
	e.ci.deliver(base, "success")
	// The delivery was answered while the first create still hangs in the
	// slow GitLab: the webhook never waits for the API.
	if n := len(e.ci.apiPipelines()); n != 0 {
		t.Errorf("%d pipelines existed when the webhook was answered", n)
	}
	e.waitRunSucceeded(t)
	wantEachDownstreamOnce(t, e.ci)
	if !strings.Contains(e.recv.stderr.String(), "will retry") {
		t.Errorf("no retry was logged after the time-out:\n%s", e.recv.stderr)
	}
}

func TestChainTriggerFollowDrivesTheRunWithoutWebhooks(t *testing.T) {
	fake := fakeImages(t)
	ci := newFakeCI(t, fake)
	tokenFile := credentialFile(t, t.TempDir(), "token", e2eToken+"\n")
	state := filepath.Join(t.TempDir(), "follow.db")
	args := []string{"chain", "trigger", "img/base", "--follow", "--interval", "50ms", "--state", state,
		"--gitlab-url", fake.URL(), "--group", "img", "--token-file", tokenFile, "-o", "json"}
	// Killed once right after creating its second pipeline, then run again.
	_, _, code := opsctlEnv(t, []string{"OPSCTL_CHAIN_CRASH_AT=created:2"}, args...)
	if code != -1 {
		t.Fatalf("first follow: exit %d, want a SIGKILL", code)
	}
	out, stderr, code := opsctlEnv(t, nil, args...)
	if code != 0 {
		t.Fatalf("follow: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "resuming the unfinished run") {
		t.Errorf("the second follow did not resume the run:\n%s", stderr)
	}
	var run chain.Run
	if err := json.Unmarshal([]byte(out), &run); err != nil || run.Status != chain.RunSucceeded {
		t.Fatalf("follow output: %v\n%s", err, out)
	}
	got := ci.apiPipelines()
	want := map[string]int{"img/base": 1, "img/lang/ruby": 1, "img/lang/python": 1, "img/app": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pipelines: %v, want %v", got, want)
	}
	// A failing project ends the follow with exit 1 and names it.
	ci.fail["img/lang/python"] = true
	_, stderr, code = opsctlEnv(t, nil, args...)
	if code != 1 || !strings.Contains(stderr, "img/lang/python failed") {
		t.Errorf("follow with a failing project: exit %d\n%s", code, stderr)
	}
	out, _, code = opsctlEnv(t, nil, "chain", "status", "--state", state)
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Errorf("chain status --state: exit %d\n%s", code, out)
	}
}

func TestChainTriggerOnServerAndDryRun(t *testing.T) {
	e := newChainE2E(t)
	e.recv.start()
	out, stderr, code := opsctlEnv(t, nil, append([]string{"chain", "trigger", "img/lang/ruby", "--dry-run"}, e.source...)...)
	if code != 0 || !strings.Contains(out, "would create a pipeline of img/lang/ruby on main") || !strings.Contains(out, "2: img/app") {
		t.Errorf("trigger --dry-run: exit %d\n%s%s", code, out, stderr)
	}
	if n := len(e.ci.pl.All()); n != 0 {
		t.Fatalf("--dry-run created %d pipelines", n)
	}
	out, stderr, code = opsctlEnv(t, nil, "chain", "trigger", "img/lang/ruby", "--server", e.recv.url(),
		"--webhook-secret-file", e.secret, "--follow", "--interval", "50ms")
	if code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("trigger --server --follow: exit %d\n%s%s\n%s", code, out, stderr, e.recv.stderr)
	}
	if got := e.ci.apiPipelines(); fmt.Sprint(got) != fmt.Sprint(map[string]int{"img/lang/ruby": 1, "img/app": 1}) {
		t.Errorf("pipelines: %v", got)
	}
	// Without the secret the receiver refuses to start runs, so the client
	// asks for it before sending anything; with a wrong one, the receiver
	// answers 401.
	_, stderr, code = opsctlEnv(t, nil, "chain", "trigger", "img/lang/ruby", "--server", e.recv.url())
	if code != 2 || !strings.Contains(stderr, "--server needs --webhook-secret-file FILE") {
		t.Errorf("trigger --server without the secret: exit %d %s", code, stderr)
	}
	wrongSecret := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrongSecret, []byte("not-the-secret\n"), 0o600)
	_, stderr, code = opsctlEnv(t, nil, "chain", "trigger", "img/lang/ruby", "--server", e.recv.url(), "--webhook-secret-file", wrongSecret)
	if code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("trigger --server with a wrong secret: exit %d %s", code, stderr)
	}
	_, stderr, code = opsctlEnv(t, nil, "chain", "trigger", "img/nope", "--server", e.recv.url(), "--webhook-secret-file", e.secret)
	if code != 1 || !strings.Contains(stderr, "img/nope") {
		t.Errorf("trigger of an unknown project: exit %d %s", code, stderr)
	}
}

// TestChainServeNeedsAWebhookSecret (issue 19 item 4): serve without
// --webhook-secret-file refuses to start; with --insecure-no-webhook-secret
// it starts, says so once, and still refuses POST /runs to anyone.
func TestChainServeNeedsAWebhookSecret(t *testing.T) {
	e := newChainE2E(t)
	var withoutSecret []string
	for i := 0; i < len(e.recv.args); i++ {
		if e.recv.args[i] == "--webhook-secret-file" {
			i++
			continue
		}
		withoutSecret = append(withoutSecret, e.recv.args[i])
	}
	e.recv.args = withoutSecret
	e.recv.start()
	if !e.recv.hasExited() {
		t.Fatalf("chain serve started without a webhook secret:\n%s", e.recv.stderr)
	}
	stderr := e.recv.stderr.String()
	if code := e.recv.cmd.ProcessState.ExitCode(); code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 ||
		!strings.Contains(stderr, "no webhook secret: expected --webhook-secret-file FILE (or --insecure-no-webhook-secret") {
		t.Errorf("serve without a secret: exit %d, stderr %q; want 2 and one line naming both flags", code, stderr)
	}

	both := append(slices.Clone(withoutSecret), "--webhook-secret-file", e.secret, "--insecure-no-webhook-secret")
	if _, stderr, code := opsctlEnv(t, nil, both...); code != 2 || !strings.Contains(stderr, "exclude each other") {
		t.Errorf("serve with a secret and --insecure-no-webhook-secret: exit %d %s", code, stderr)
	}

	e.recv.stderr = &testenv.SyncBuffer{}
	e.recv.args = append(withoutSecret, "--insecure-no-webhook-secret")
	e.recv.start()
	if e.recv.hasExited() {
		t.Fatalf("serve --insecure-no-webhook-secret did not start:\n%s", e.recv.stderr)
	}
	for _, token := range []string{"", e2eSecret, "anything"} {
		req, _ := http.NewRequest("POST", e.recv.url()+"/runs", strings.NewReader(`{"project":"img/base"}`))
		if token != "" {
			req.Header.Set("X-Gitlab-Token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || strings.Count(string(body), "\n") != 1 || !strings.Contains(string(body), "without a webhook secret") {
			t.Errorf("POST /runs with token %q to a receiver without a secret: HTTP %d %q, want 403 and one line", token, resp.StatusCode, body)
		}
	}
	_, stderr, code := opsctlEnv(t, nil, "chain", "trigger", "img/base", "--server", e.recv.url(), "--webhook-secret-file", e.secret)
	if code != 1 || !strings.Contains(stderr, "403") {
		t.Errorf("trigger --server to a receiver without a secret: exit %d %s", code, stderr)
	}
	if n := len(e.ci.pl.All()); n != 0 {
		t.Errorf("%d pipelines created through a receiver without a secret", n)
	}
	log := e.recv.stderr.String()
	if n := strings.Count(log, "level=WARN"); n != 1 || !strings.Contains(log, "running without a webhook secret (--insecure-no-webhook-secret)") {
		t.Errorf("%d WARN lines, want the one about running without a secret:\n%s", n, log)
	}
}

// TestPackagedChainUnitStarts: the ExecStart of the packaged
// opsctl-chain.service, with the settings of packaging/default/opsctl-chain
// and the credentials install.md puts in place, starts a receiver that
// takes the secret (no warning about running without one).
func TestPackagedChainUnitStarts(t *testing.T) {
	root := testenv.ModuleRoot()
	unit, err := os.ReadFile(filepath.Join(root, "packaging/systemd/opsctl-chain.service"))
	if err != nil {
		t.Fatal(err)
	}
	settings, err := os.ReadFile(filepath.Join(root, "packaging/default/opsctl-chain"))
	if err != nil {
		t.Fatal(err)
	}
	fake := fakeImages(t)
	creds := t.TempDir()
	credentialFile(t, creds, "gitlab-token", e2eToken+"\n")
	credentialFile(t, creds, "webhook-secret", e2eSecret+"\n")
	addr := freeAddr(t)
	env := map[string]string{}
	for _, line := range strings.Split(string(settings), "\n") {
		if key, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[key] = value
		}
	}
	// The test's GitLab and port instead of the examples; and the unit's
	// state directory is a temporary one.
	env["OPSCTL_GITLAB_URL"], env["OPSCTL_GITLAB_GROUP"], env["OPSCTL_CHAIN_LISTEN"] = fake.URL(), "img", addr
	env["CREDENTIALS_DIRECTORY"] = creds
	unitText := strings.ReplaceAll(string(unit), "\\\n", " ")
	var execStart string
	for _, line := range strings.Split(unitText, "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = rest
		}
	}
	fields := strings.Fields(execStart)
	if len(fields) < 2 || fields[0] != "/usr/bin/opsctl" {
		t.Fatalf("ExecStart=%s: expected /usr/bin/opsctl ...", execStart)
	}
	var args []string
	for _, word := range fields[1:] {
		// systemd: ${VAR} is one word, $VAR is split at white space.
		switch {
		case strings.Contains(word, "${"):
			args = append(args, os.Expand(word, func(k string) string { return env[k] }))
		case strings.HasPrefix(word, "$"):
			args = append(args, strings.Fields(env[word[1:]])...)
		default:
			args = append(args, word)
		}
	}
	for i, a := range args {
		if a == "--state" {
			args[i+1] = filepath.Join(t.TempDir(), "chain.db")
		}
	}
	recv := &receiverProc{t: t, addr: addr, args: args, stderr: &testenv.SyncBuffer{}}
	recv.start()
	defer recv.kill()
	if recv.hasExited() {
		t.Fatalf("the packaged unit's command line %v did not start:\n%s", args, recv.stderr)
	}
	if strings.Contains(recv.stderr.String(), "without a webhook secret") {
		t.Errorf("the packaged unit runs without the webhook secret:\n%s", recv.stderr)
	}
	req, _ := http.NewRequest("POST", recv.url()+"/runs", strings.NewReader(`{"project":"img/base"}`))
	req.Header.Set("X-Gitlab-Token", e2eSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("POST /runs with the secret of the unit's credentials: HTTP %d, want 201", resp.StatusCode)
	}
}

// TestChainServePrunesOldRuns (issue 19 item 6): with --retention-runs 1 a
// restarted receiver keeps the newest of its two ended runs.
func TestChainServePrunesOldRuns(t *testing.T) {
	e := newChainE2E(t)
	e.recv.start()
	var ids []string
	for range 2 {
		base := e.ci.pl.Start("img/base", "main", "schedule")
		e.ci.build(base, "success")
		var runs []chain.Run
		succeeded := func() bool {
			runs = e.recv.runs(t)
			return len(runs) == len(ids)+1 && runs[0].Status == chain.RunSucceeded
		}
		if !testenv.WaitUntil(t, 60*time.Second, succeeded) {
			t.Fatalf("run %d did not succeed: %+v\n%s", len(ids)+1, runs, e.recv.stderr)
		}
		ids = append(ids, runs[0].ID)
	}
	e.recv.kill()
	e.recv.args = append(e.recv.args, "--retention-runs", "1")
	e.recv.start()
	waitLog(t, e.recv.stderr, `msg="old runs pruned" removed=1`, 15*time.Second)
	if runs := e.recv.runs(t); len(runs) != 1 || runs[0].ID != ids[1] {
		t.Errorf("after pruning to 1 run: %d runs, want the newest, %s", len(runs), ids[1])
	}
}

// TestChainServeRescansTheGraph: a project added to the group after the
// receiver started is part of the next run once the graph was rescanned.
func TestChainServeRescansTheGraph(t *testing.T) {
	e := newChainE2E(t)
	e.recv.args = append(e.recv.args, "--rescan-interval", "200ms")
	e.recv.start()
	e.fake.AddProject(fakegitlab.ProjectSpec{Path: "img/late", Files: map[string]string{".gitlab-deps": "img/app\n"}})
	e.fake.AddHook("img/late", fakegitlab.Hook{URL: e.recv.url() + "/hook", PipelineEvents: true, Token: e2eSecret})
	testenv.WaitUntil(t, 20*time.Second, func() bool { return strings.Contains(e.recv.stderr.String(), "graph rescanned") })
	base := e.ci.pl.Start("img/base", "main", "schedule")
	e.ci.build(base, "success")
	run := e.waitRunSucceeded(t)
	if _, ok := run.Steps["img/late"]; !ok || e.ci.apiPipelines()["img/late"] != 1 {
		t.Errorf("the project added after the start was not rebuilt: steps %v, pipelines %v", run.Steps, e.ci.apiPipelines())
	}
}

// TestChainStatusLimitReachesTheReceiver: --limit 0 lists every run of the
// receiver, not the receiver's default page.
func TestChainStatusLimitReachesTheReceiver(t *testing.T) {
	planner := &chain.GraphPlanner{
		Graph: chain.NewGraph([]*chain.Project{{Path: "g/base", Source: chain.SourceDepsFile}, {Path: "g/app", Upstreams: []string{"g/base"}, Source: chain.SourceDepsFile}}, nil),
		Refs:  map[string]chain.ProjectRef{"g/base": {Path: "g/base", ID: 1, DefaultBranch: "main"}, "g/app": {Path: "g/app", ID: 2, DefaultBranch: "main"}},
	}
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: filepath.Join(t.TempDir(), "chain.db"), Planner: planner})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	const runs = 105
	for range runs {
		if _, err := engine.StartRun([]string{"g/base"}, "", "test", ""); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer((&chain.Receiver{Engine: engine}).Handler())
	defer srv.Close()
	for limit, want := range map[int]int{0: runs, 3: 3} {
		var out bytes.Buffer
		f := &cli.Factory{IO: &cli.IOStreams{Out: &out, ErrOut: io.Discard}, Getenv: func(string) string { return "" }}
		opts := &ChainStatusOptions{Factory: f, Server: srv.URL, Limit: limit, Output: &cli.OutputFlag{Value: "json"}}
		if err := runChainStatus(opts); err != nil {
			t.Fatal(err)
		}
		var got []chain.Run
		if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != want {
			t.Errorf("status --limit %d: %d runs (%v), want %d", limit, len(got), err, want)
		}
	}
}

// TestChainServeStopFinishesTheCreationUnderWay: SIGINT while GitLab is
// still creating a pipeline; the receiver waits for the answer and records
// it before it exits, instead of leaving the step to be reconciled.
func TestChainServeStopFinishesTheCreationUnderWay(t *testing.T) {
	e := newChainE2E(t)
	e.recv.start()
	// Longer than the test needs to send the signal once the create is on
	// its way, shorter than the receiver's 10 s grace.
	e.fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/pipeline", Delay: 3 * time.Second, Times: 1})
	base := e.ci.pl.Start("img/base", "main", "schedule")
	e.ci.deliver(base, "success")
	// The client logs each request at debug level just before sending it.
	waitLog(t, e.recv.stderr, `msg="performing request" method=POST`, 15*time.Second)
	signalled := len(e.recv.stderr.String())
	e.recv.cmd.Process.Signal(os.Interrupt)
	if !e.recv.waitExit(15 * time.Second) {
		t.Fatal("receiver did not stop on SIGINT")
	}
	if code := e.recv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("receiver exit %d after SIGINT:\n%s", code, e.recv.stderr)
	}
	log := e.recv.stderr.String()
	if created := strings.Index(log, `msg="pipeline created"`); created < signalled {
		t.Fatalf("the creation under way was not answered and recorded after SIGINT (at byte %d of the log):\n%s", signalled, log)
	}
	if n := len(e.ci.apiPipelines()); n != 1 {
		t.Fatalf("%d pipelines created before the receiver exited, want the 1 under way:\n%s", n, log)
	}
	// Restarted, it carries on without creating that one again, and without
	// having to look for it.
	e.recv.start()
	e.waitRunSucceeded(t)
	wantEachDownstreamOnce(t, e.ci)
	if strings.Contains(e.recv.stderr.String()[len(log):], "pipeline reconciled") {
		t.Errorf("the restarted receiver reconciled a pipeline the stop should have recorded:\n%s", e.recv.stderr)
	}
}

// waitLog waits until log holds want.
func waitLog(t *testing.T, log *testenv.SyncBuffer, want string, d time.Duration) {
	t.Helper()
	if !testenv.WaitUntil(t, d, func() bool { return strings.Contains(log.String(), want) }) {
		t.Fatalf("no %q in the log within %v:\n%s", want, d, log)
	}
}

// TestChainTriggerFollowSecondInterruptStopsAtOnce: the first SIGINT gives
// a pipeline creation under way its grace; a second one ends opsctl at
// once, as it did before there was a grace.
func TestChainTriggerFollowSecondInterruptStopsAtOnce(t *testing.T) {
	fake := fakeImages(t)
	newFakeCI(t, fake)
	fake.InjectFault(fakegitlab.Fault{Method: "POST", Path: "~/pipeline", Delay: time.Minute, Times: 1})
	dir := t.TempDir()
	tokenFile := credentialFile(t, dir, "token", e2eToken+"\n")
	stderr := &testenv.SyncBuffer{}
	proc := startOpsctl(t, nil, stderr, nil, "chain", "trigger", "img/base", "--follow", "--interval", "50ms",
		"--state", filepath.Join(dir, "follow.db"), "--log-level", "debug",
		"--gitlab-url", fake.URL(), "--group", "img", "--token-file", tokenFile)
	waitLog(t, stderr, `msg="performing request" method=POST`, 15*time.Second)
	// Interrupted again and again, as an impatient person would: the first
	// starts the grace, a later one must end it.
	interrupted := func() bool {
		proc.cmd.Process.Signal(os.Interrupt)
		return proc.waitExit(50 * time.Millisecond)
	}
	if !testenv.WaitUntil(t, 5*time.Second, interrupted) {
		t.Fatalf("trigger --follow still running after 5s of repeated SIGINTs:\n%s", stderr)
	}
}
