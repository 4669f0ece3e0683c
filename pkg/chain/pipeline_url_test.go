package chain

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The engine records each step's pipeline page as GitLab names it: the
// web_url of the pipeline it created, the url of a Pipeline Hook. Only an
// http(s) URL is kept, and a new pipeline of the step forgets the page of
// the earlier one.
func TestStepRecordsPipelinePage(t *testing.T) {
	fx, ruby := baseSucceeded(t)
	run := fx.onlyRun()
	if got, want := run.Steps["ops/base"].PipelineURL, "http://example.com/ops/base/-/pipelines/31"; got != want {
		t.Errorf("root's page from its Pipeline Hook %q, want %q", got, want)
	}
	want := fmt.Sprintf("https://gitlab.example.com/ops/ruby/-/pipelines/%d", ruby.ID)
	if got := run.Steps["ops/ruby"].PipelineURL; got != want {
		t.Errorf("page of the created pipeline %q, want the web_url %q", got, want)
	}

	// A hook naming no page (GitLab before 16.1) keeps the one known.
	if code := fx.pipeline("ops/ruby", ruby.ID, "running", hookOpts{runID: ruby.RunID, noURL: true}); code != http.StatusOK {
		t.Fatalf("running: HTTP %d", code)
	}
	if got := fx.onlyRun().Steps["ops/ruby"].PipelineURL; got != want {
		t.Errorf("after a hook without url: %q, want %q", got, want)
	}
	// A link that is not http(s) is never kept.
	for _, bad := range []string{"javascript:alert(1)", "data:text/html,<script>alert(1)</script>", "/ops/ruby/-/pipelines/1",
		"https://gitlab.example.com/a b", `https://gitlab.example.com/x"><script>alert(1)</script>`, "https://user:pw@gitlab.example.com/x", "https://gitlab.example.com/" + strings.Repeat("a", MaxPipelineURL)} {
		if code := fx.pipeline("ops/ruby", ruby.ID, "running", hookOpts{runID: ruby.RunID, url: bad}); code != http.StatusOK {
			t.Fatalf("running with url %.40q: HTTP %d", bad, code)
		}
		if got := fx.onlyRun().Steps["ops/ruby"].PipelineURL; got != want {
			t.Errorf("after a hook with url %.40q: %q, want %q kept", bad, got, want)
		}
	}
	// The step fails; a new pipeline of ruby without a page takes over: the
	// old page is not its page.
	fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID})
	if code := fx.pipeline("ops/ruby", 777, "success", hookOpts{noURL: true}); code != http.StatusOK {
		t.Fatalf("success of a new pipeline: HTTP %d", code)
	}
	step := fx.onlyRun().Steps["ops/ruby"]
	if step.PipelineID != 777 || step.PipelineURL != "" {
		t.Errorf("after pipeline 777 without url: pipeline %d, page %q, want 777 and none", step.PipelineID, step.PipelineURL)
	}
	// The page survives a restart (it is in the state file).
	fx.reopen()
	if got := fx.onlyRun().Steps["ops/base"].PipelineURL; got != "http://example.com/ops/base/-/pipelines/31" {
		t.Errorf("after reopen: %q", got)
	}
}

// A Pipeline Hook whose url is not a string is a wrong shape: 400, like
// any other field of the wrong type.
func TestPipelineHookURLOfWrongType(t *testing.T) {
	body := strings.Replace(string(pipelineHook(t, "ops/base", 31, "success", hookOpts{url: "X"})), `"url":"X"`, `"url":42`, 1)
	if _, err := ParsePipelineHook([]byte(body)); err == nil || !strings.Contains(err.Error(), "url") {
		t.Errorf("url 42: err %v, want one naming the url", err)
	}
}

// FuzzPipelinePageURL: what PipelinePageURL keeps is its input unchanged,
// an absolute http(s) URL with a host, short, without white space, control
// characters, quotes or angle brackets; everything else is "".
func FuzzPipelinePageURL(f *testing.F) {
	f.Add("https://gitlab.example.com/g/p/-/pipelines/31")
	f.Add("javascript:alert(1)")
	f.Add(`https://gitlab.example.com/x"><script>alert(1)</script>`)
	f.Fuzz(func(t *testing.T, s string) {
		got := PipelinePageURL(s)
		if got == "" {
			return
		}
		u, err := url.Parse(got)
		if got != s || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			len(got) > MaxPipelineURL || strings.ContainsAny(got, "\"'<>\\`{}|^ \t\r\n\x00\x7f") {
			t.Errorf("PipelinePageURL(%q) kept %q", s, got)
		}
	})
}
