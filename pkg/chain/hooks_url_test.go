package chain

import (
	"strings"
	"testing"
)

// docs/chain.md (hooks sync): a hook URL that differs from --hook-url only by
// a trailing slash or the case of scheme and host is the same hook, edited
// in place to URL, never a second hook beside it.
func TestHookURLTrailingSlashAndCaseAreTheSameHook(t *testing.T) {
	want := WantedHook("https://chain.example.com/hook", "")
	project := ProjectRef{Path: "ops/app", ID: 1}
	for _, have := range []string{
		"https://chain.example.com/hook/",
		"HTTPS://Chain.Example.COM/hook",
	} {
		hook := Hook{ID: 7, URL: have, PipelineEvents: true, EnableSSLVerification: true}
		a := decideHook(project, []Hook{hook}, want)
		if a.Kind != HookUpdate || a.HookID != 7 {
			t.Errorf("existing hook %s: got %s of hook %d, want an update of hook 7", have, a.Kind, a.HookID)
			continue
		}
		if got := strings.Join(a.Changes, ", "); got != "url "+have+" -> "+want.URL {
			t.Errorf("existing hook %s: changes %q, want only the URL corrected", have, got)
		}
	}
	// A different path is a different hook.
	other := Hook{ID: 8, URL: "https://chain.example.com/hook2", PipelineEvents: true, EnableSSLVerification: true}
	if a := decideHook(project, []Hook{other}, want); a.Kind != HookAdd {
		t.Errorf("hook for another path: got %s, want add", a.Kind)
	}
}
