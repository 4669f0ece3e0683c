// Package browsertest starts a headless Chromium (Debian's package
// chromium) for tests that look at what opsctl draws or serves, drives it
// with chromedp, and keeps screenshots as test artifacts.
//
// A missing Chromium goes through internal/testenv: a skip on a developer's
// machine, a failure under CI=true. `make test` installs it
// (scripts/testdeps/chain.list).
package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/opsctl/opsctl/internal/testenv"
)

// ArtifactsEnv names the folder where tests keep their screenshots (one
// sub-folder per test). Unset, they go to the test's temporary folder and
// are removed with it.
const ArtifactsEnv = "OPSCTL_TEST_ARTIFACTS"

// ActionTimeout bounds one step of a test in the browser (a navigation,
// a screenshot): a hung browser fails the test instead of hanging it.
const ActionTimeout = 60 * time.Second

// New starts a headless Chromium with a fresh profile for t and returns the
// context of a tab in it; the browser is stopped when t ends. Width and
// height are the window's size in CSS pixels.
//
// The flags are those Chromium needs here: as root it must run without
// its sandbox, and this machine's network is closed, so everything that
// would reach out to Google's services on its own is turned off (without
// that, Chromium tries again and again and fills its log).
func New(t testing.TB, width, height int) context.Context {
	t.Helper()
	exe := testenv.Need(t, "chromium", "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("force-device-scale-factor", "1"),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser; it must run on ctx itself, not
	// on a context with a timeout, or the timeout would end the browser.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", exe, err)
		}
	case <-time.After(ActionTimeout):
		t.Fatalf("starting %s: no answer in %s", exe, ActionTimeout)
	}
	return ctx
}

// Do runs actions in the tab of ctx, each step bounded by ActionTimeout,
// and fails the test naming what it was doing.
func Do(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for _, a := range actions {
		if _, err := Run(ctx, a); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
}

// Run runs one action in the tab of ctx, bounded by ActionTimeout.
func Run[T any](ctx context.Context, a chromedp.Action[T]) (T, error) {
	stepCtx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	return chromedp.Run(stepCtx, a)
}

// Value runs an action that returns a value, and fails the test naming
// what it was doing when it cannot.
func Value[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// cspWatcher counts the page's Content-Security-Policy violations in
// window.__cspViolations. It is added through the DevTools protocol, which
// the page's own policy does not govern, and runs before the page's
// content, so it sees violations of the first paint too.
const cspWatcher = `window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + (e.sample || ''));
});`

// WatchCSP makes every page opened next in the tab of ctx record its
// Content-Security-Policy violations, for CSPViolations to read.
func WatchCSP(t testing.TB, ctx context.Context) {
	t.Helper()
	_ = Value(t, ctx, "watching CSP violations", func(ctx context.Context, target *chromedp.Target) (page.AddScriptToEvaluateOnNewDocumentResult, error) {
		return cdp.Call(ctx, target, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspWatcher})
	})
}

// CSPViolations returns the violations the page in the tab of ctx has
// reported so far (WatchCSP must have run before it was opened).
func CSPViolations(t testing.TB, ctx context.Context) []string {
	t.Helper()
	return Value(t, ctx, "reading CSP violations", chromedp.Evaluate[[]string](`window.__cspViolations || ['no watcher: WatchCSP was not called before the page opened']`))
}

// FullScreenshot is a PNG of the whole page in the tab of ctx, beyond the
// window too.
func FullScreenshot(t testing.TB, ctx context.Context) []byte {
	t.Helper()
	return Value(t, ctx, "taking a screenshot", chromedp.FullScreenshot(100))
}

// ElementScreenshot is a PNG of the first element that matches the CSS
// selector, at its full size.
func ElementScreenshot(t testing.TB, ctx context.Context, selector string) []byte {
	t.Helper()
	return Value(t, ctx, "taking a screenshot of "+selector, chromedp.Screenshot(chromedp.CSS(selector)))
}

// KeepArtifact writes data as name in the test's artifact folder and
// returns its path, which the test log shows.
func KeepArtifact(t testing.TB, name string, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if root := os.Getenv(ArtifactsEnv); root != "" {
		dir = filepath.Join(root, unsafeChars.ReplaceAllString(t.Name(), "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("%s: %v", ArtifactsEnv, err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("keeping %s: %v", name, err)
	}
	t.Logf("artifact: %s", path)
	return path
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
