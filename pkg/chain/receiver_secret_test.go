package chain

import (
	"net/http"
	"strings"
	"testing"
)

// TestStartRunNeedsTheSecret (issue 19 item 4): a receiver without a
// webhook secret refuses POST /runs from anyone, with any token, whether or
// not the admin allowed unauthenticated webhooks; nothing is queued. With
// a secret, only the right token starts a run.
func TestStartRunNeedsTheSecret(t *testing.T) {
	const body = `{"project":"ops/base"}`
	for _, tc := range []struct {
		name               string
		secret             string
		insecureNoSecret   bool
		token              string
		wantRuns, wantHook int
	}{
		{"no secret", "", false, "", http.StatusForbidden, http.StatusUnauthorized},
		{"no secret, a token", "", false, "anything", http.StatusForbidden, http.StatusUnauthorized},
		{"no secret by choice", "", true, "", http.StatusForbidden, http.StatusOK},
		{"no secret by choice, a token", "", true, "anything", http.StatusForbidden, http.StatusOK},
		{"secret, no token", "s3cret", false, "", http.StatusUnauthorized, http.StatusUnauthorized},
		{"secret, wrong token", "s3cret", false, "s3cre", http.StatusUnauthorized, http.StatusUnauthorized},
		{"secret, flag ignored", "s3cret", true, "", http.StatusUnauthorized, http.StatusUnauthorized},
		{"secret, right token", "s3cret", false, "s3cret", http.StatusCreated, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
			fx.recv = &Receiver{Engine: fx.engine, Secret: tc.secret, InsecureNoSecret: tc.insecureNoSecret}
			h := fx.recv.Handler()
			rec := serveDirect(t, h, "POST", "/runs", "", tc.token, body)
			if rec.Code != tc.wantRuns {
				t.Errorf("POST /runs: HTTP %d %s, want %d", rec.Code, rec.Body, tc.wantRuns)
			}
			if rec.Code >= 400 && strings.Count(rec.Body.String(), "\n") != 1 {
				t.Errorf("POST /runs: body %q, want one line", rec.Body)
			}
			fx.work()
			if rec.Code != http.StatusCreated {
				wantCreated(t, fx.api)
			} else {
				wantCreated(t, fx.api, "ops/base")
			}
			hook := pipelineHook(t, "ops/base", 31, "success", hookOpts{})
			if rec := serveDirect(t, h, "POST", "/hook", "Pipeline Hook", tc.token, string(hook)); rec.Code != tc.wantHook {
				t.Errorf("POST /hook: HTTP %d %s, want %d", rec.Code, rec.Body, tc.wantHook)
			}
		})
	}
}
