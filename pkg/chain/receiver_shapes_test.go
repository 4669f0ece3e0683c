package chain

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// serveDirect calls the receiver's handler in the test's goroutine: net/http
// recovers a handler's panic per request, so only a direct call shows one.
func serveDirect(t testing.TB, h http.Handler, method, target, event, token, body string) (rec *httptest.ResponseRecorder) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if event != "" {
		req.Header.Set("X-Gitlab-Event", event)
	}
	if token != "" {
		req.Header.Set("X-Gitlab-Token", token)
	}
	rec = httptest.NewRecorder()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s %s %q: handler panicked: %v", method, target, body, p)
			rec.Code = 999
		}
	}()
	h.ServeHTTP(rec, req)
	return rec
}

// TestHookWrongShapesAre400: JSON of the wrong shape, where the receiver
// reads a field, is a 400 with a one-line body naming what was expected;
// never a panic (issue 19 item 5) and never a run (item 13: ids <= 0).
func TestHookWrongShapesAre400(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	h := fx.recv.Handler()
	valid := `"object_kind":"pipeline","object_attributes":{"id":31,"status":"success","ref":"main"},"project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"}`
	for _, tc := range []struct{ event, body, want string }{
		{"Pipeline Hook", `{"object_attributes":null}`, "object_kind: missing"},
		{"Pipeline Hook", `{"builds":[null]}`, "object_kind: missing"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":null}`, "object_attributes: missing, expected an object"},
		{"Pipeline Hook", `{"object_kind":"pipeline","builds":[null]}`, "object_attributes: missing, expected an object"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":[],"builds":[null]}`, "object_attributes: expected an object, got an array"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":null,"project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"}}`, "object_attributes"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":{"id":31,"status":"success","ref":"main"},"project":null}`, "project"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":{"id":31,"status":"success","ref":"main","variables":[null]},"project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"}}`, "variables"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":{"id":31,"status":"success","ref":"main","variables":null,"duration":null},"project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"},"builds":[null]}`, ""},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":{"id":"31","status":"success","ref":"main"},"project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"}}`, "object_attributes.id"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":{"id":0,"status":"success","ref":"main"},"project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"}}`, "object_attributes.id"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":{"id":-5,"status":"success","ref":"main"},"project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"}}`, "object_attributes.id"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":{"id":31,"status":"success","ref":"main"},"project":{"id":0,"path_with_namespace":"ops/base","default_branch":"main"}}`, "project.id"},
		{"Pipeline Hook", `{"object_kind":"pipeline","object_attributes":{"id":31,"status":"success","ref":"main"},"project":{"id":-1,"path_with_namespace":"ops/base","default_branch":"main"}}`, "project.id"},
		{"Pipeline Hook", `{` + valid + `,"object_kind":7}`, "object_kind"},
		{"Pipeline Hook", `[` + `{` + valid + `}]`, "object"},
		{"Pipeline Hook", `null`, "object"},
		{"Push Hook", `{"object_kind":"push","ref":"refs/heads/main","project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"},"commits":[null],"total_commits_count":1}`, "commits[0]"},
		{"Push Hook", `{"object_kind":"push","ref":"refs/heads/main","project":null,"commits":[],"total_commits_count":0}`, "project"},
		{"Push Hook", `{"object_kind":"push","ref":"refs/heads/main","project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"},"commits":[{"added":[null]}],"total_commits_count":1}`, "added"},
		{"Push Hook", `{"object_kind":"push","ref":"refs/heads/main","project":{"id":1,"path_with_namespace":"ops/base","default_branch":"main"},"commits":{"added":["Dockerfile"]},"total_commits_count":1}`, "commits"},
		{"Push Hook", `null`, "object"},
	} {
		rec := serveDirect(t, h, "POST", "/hook", tc.event, "s3cret", tc.body)
		if tc.want == "" {
			// null for a field the receiver does not read is GitLab's way
			// of saying "none": the event is taken as usual.
			if rec.Code != http.StatusOK {
				t.Errorf("%s %s: HTTP %d %s, want 200", tc.event, tc.body, rec.Code, rec.Body)
			}
			continue
		}
		body := rec.Body.String()
		if rec.Code != http.StatusBadRequest || strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: HTTP %d %q, want 400 with one line naming %q", tc.event, tc.body, rec.Code, body, tc.want)
		}
	}
	runs, err := fx.engine.Runs(0)
	if err != nil || len(runs) != 1 {
		t.Errorf("%d runs after the wrong shapes (%v), want the 1 of the one valid event", len(runs), err)
	}
}
