package chain

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// flakySource is a source whose listing fails the first failures times
// with err.
type flakySource struct {
	Source
	failures int
	err      error
}

func (s *flakySource) ListProjects(ctx context.Context) ([]ProjectRef, error) {
	if s.failures > 0 {
		s.failures--
		return nil, s.err
	}
	return s.Source.ListProjects(ctx)
}

// tagDigests answers the digest set for each image's tag.
type tagDigests map[string]string

func (d tagDigests) Digest(ctx context.Context, image ImageRef) (string, error) {
	return d[image.String()], nil
}

// watchLoopFixture: g/base builds FROM debian:bookworm, g/app on g/base.
func watchLoopFixture(t *testing.T, failures int, err error) (*engineFixture, *WatchLoop, tagDigests, *strings.Builder) {
	t.Helper()
	root := t.TempDir()
	for name, content := range map[string]string{"g/base/Containerfile": "FROM debian:bookworm\n", "g/app/.gitlab-deps": "g/base\n"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fx := newEngineFixture(t, nil)
	digests := tagDigests{"docker.io/library/debian:bookworm": "sha256:aaaa"}
	log := &strings.Builder{}
	loop := &WatchLoop{
		Watcher:  &Watcher{Engine: fx.engine, Digests: digests},
		Scanner:  Scanner{Source: &flakySource{Source: &DirSource{Root: root}, failures: failures, err: err}, Registries: AnyRegistry(), Concurrency: 1},
		Interval: time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(log, nil)),
	}
	return fx, loop, digests, log
}

// Run goes on after a check GitLab failed for a while, reports each
// check, and the run a change starts gets its pipelines created.
func TestWatchLoopKeepsWatchingAfterATemporaryFailure(t *testing.T) {
	down := &networkError{op: "list projects of group g", err: errors.New("connection refused")}
	fx, loop, digests, log := watchLoopFixture(t, 1, down)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var reports []*WatchResult
	err := loop.Run(ctx, func(res *WatchResult) error {
		reports = append(reports, res)
		switch len(reports) {
		case 1:
			digests["docker.io/library/debian:bookworm"] = "sha256:bbbb" // a new debian
		case 2:
			stop()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(log.String(), "check failed, next check in 1ms") {
		t.Errorf("the failed check was not logged:\n%s", log)
	}
	if len(reports) != 2 || len(reports[0].Changed) != 0 || len(reports[1].Changed) != 1 || reports[1].Changed[0].Run == "" {
		t.Fatalf("reports %+v, want the first sighting, then one change with its run", reports)
	}
	wantCreated(t, fx.api, "g/base")
}

// A check failing for good ends Run with its error; so does report's.
func TestWatchLoopStopsOnAFailureThatStays(t *testing.T) {
	_, loop, _, _ := watchLoopFixture(t, 1, &HostNotFoundError{Op: "list projects of group g", Host: "gitlab.example.invalid"})
	if err := loop.Run(context.Background(), func(*WatchResult) error { return nil }); !errors.As(err, new(*HostNotFoundError)) {
		t.Errorf("Run when GitLab's name does not resolve at the first check: %v", err)
	}
	_, loop, _, _ = watchLoopFixture(t, 0, nil)
	full := errors.New("no space left on device")
	if err := loop.Run(context.Background(), func(*WatchResult) error { return full }); !errors.Is(err, full) {
		t.Errorf("Run when the report fails: %v", err)
	}
}
