package chain

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// FuzzPipelineHook: whatever body arrives as a Pipeline Hook, the receiver
// answers 200, 204 or 400 (never a 5xx or a panic), and what it accepted
// is a run it can read back.
func FuzzPipelineHook(f *testing.F) {
	seed, err := os.ReadFile("testdata/hooks/pipeline-success.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"object_kind":"pipeline","object_attributes":{"id":1,"status":"success","ref":"main"},"project":{"path_with_namespace":"ops/base","default_branch":"main"}}`))
	f.Add([]byte(`{"object_kind":"pipeline","object_attributes":{"id":-1,"status":"failed","ref":"main","variables":[{"key":"OPSCTL_CHAIN_RUN","value":"x"}]},"project":{"path_with_namespace":"ops/ruby","default_branch":"main"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	fx := newEngineFixture(f, testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby"))
	h := fx.recv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/hook", strings.NewReader(string(body)))
		req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
		req.Header.Set("X-Gitlab-Token", "s3cret")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusNoContent, http.StatusBadRequest:
		default:
			t.Fatalf("HTTP %d for %q: %s", rec.Code, body, rec.Body)
		}
		if _, err := fx.engine.Runs(0); err != nil {
			t.Fatalf("state unreadable after %q: %v", body, err)
		}
	})
}
