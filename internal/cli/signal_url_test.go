package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSignalContextCancelsOnTheFirstSignalAndHandsOverTheNext(t *testing.T) {
	again := make(chan os.Signal, 1)
	f := &Factory{}
	ctx, stop := f.SignalContext(again, syscall.SIGUSR2)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first signal did not cancel the context")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case sig := <-again:
		if sig != syscall.SIGUSR2 {
			t.Errorf("again got %v, want SIGUSR2", sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not reach the again channel")
	}
}

func TestSignalContextDerivesFromTheFactoryContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	f := &Factory{Context: parent}
	ctx, stop := f.SignalContext(nil)
	defer stop()
	if ctx.Err() != nil {
		t.Fatal("cancelled before anything happened")
	}
	cancel()
	<-ctx.Done()
}

func TestParseHTTPURL(t *testing.T) {
	for _, ok := range []string{"https://gitlab.example.com", "http://127.0.0.1:8686", "https://h/sub/path"} {
		if _, err := ParseHTTPURL("--x", ok, "https://e"); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "gitlab.example.com", "ftp://h", "https://", "https://user:hunter2@h", "https://user@h", "://x"} {
		_, err := ParseHTTPURL("--gitlab-url", bad, "https://gitlab.example.com")
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if ExitCode(err) != ExitUsage || !strings.HasPrefix(err.Error(), "--gitlab-url ") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: exit %d, %q; want exit 2 naming --gitlab-url without the password", bad, ExitCode(err), err)
		}
	}
}

func TestRedactURLHidesPasswordsEvenInURLsThatDoNotParse(t *testing.T) {
	for raw, want := range map[string]string{
		"https://u:hunter2@h/x":    "https://u:xxxxx@h/x",
		"https://u:hunter2@h:x:y/": "https://u:xxxxx@h:x:y/",
		"https://h/x":              "https://h/x",
	} {
		if got := RedactURL(raw); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestSecretFlagFollowsThePathRule(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	os.WriteFile(good, []byte("s3cret\n"), 0o600)
	if got, err := SecretFlag("--token-file", good); err != nil || got != "s3cret" {
		t.Fatalf("got %q, %v", got, err)
	}
	if got, err := SecretFlag("--token-file", ""); err != nil || got != "" {
		t.Fatalf("empty path: got %q, %v", got, err)
	}
	for _, path := range []string{filepath.Join(dir, "missing"), dir} {
		_, err := SecretFlag("--token-file", path)
		if ExitCode(err) != ExitUsage || !strings.HasPrefix(err.Error(), "--token-file: ") {
			t.Errorf("%s: exit %d, %v; want exit 2 naming --token-file", path, ExitCode(err), err)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if _, err := SecretFlag("--token-file", empty); ExitCode(err) != ExitFailure {
		t.Errorf("an empty secret file: exit %d, %v; want 1 (there, but holds no secret)", ExitCode(err), err)
	}
}
