package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/testenv"
)

// commandPaths lists every command of the tree the binary runs, hidden ones
// and cobra's completion commands included, as argument lists.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	f := &cli.Factory{IO: &cli.IOStreams{}, Getenv: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler)}
	root := newRootCmd(f)
	var paths [][]string
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range cmd.Commands() {
			if sub.Name() == "help" || strings.HasPrefix(sub.Name(), "__") {
				continue
			}
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(root, nil)
	return paths
}

// Every command: `opsctl --help` and `opsctl COMMAND --help` show examples.
func TestEveryCommandHelpHasExamples(t *testing.T) {
	paths := commandPaths(t)
	if len(paths) < 25 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, path := range paths {
		out, stderr, code := testenv.Run(t, "", append(path, "--help")...)
		if code != 0 {
			t.Errorf("opsctl %s --help: exit %d %q", strings.Join(path, " "), code, stderr)
			continue
		}
		_, examples, found := strings.Cut(out, "\nExamples:\n")
		examples, _, _ = strings.Cut(examples, "\n\n")
		if !found || !strings.Contains(examples, "opsctl ") {
			t.Errorf("opsctl %s --help has no examples:\n%s", strings.Join(path, " "), out)
		}
	}
}

// Every command: exit 2 for every usage error, the completion command
// included (cobra adds it only when the command line is executed).
func TestCompletionUsageErrorsExitTwo(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"completion"}, ""},
		{[]string{"completion", "tcsh"}, `unknown command "tcsh" for "opsctl completion"`},
		{[]string{"completion", "bash", "extra"}, "extra"},
		{[]string{"help", "nosuch"}, `help: unknown command "nosuch"`},
	}
	for _, tc := range cases {
		_, stderr, code := testenv.Run(t, "", tc.args...)
		if code != cli.ExitUsage {
			t.Errorf("opsctl %s: exit %d, want 2; stderr %q", strings.Join(tc.args, " "), code, stderr)
		}
		if !strings.Contains(stderr, tc.want) || (tc.want != "" && strings.Count(strings.TrimSpace(stderr), "\n") > 0) {
			t.Errorf("opsctl %s: stderr %q, want one line with %q", strings.Join(tc.args, " "), stderr, tc.want)
		}
	}
	if out, stderr, code := testenv.Run(t, "", "help", "chain", "plan"); code != 0 || !strings.Contains(out, "opsctl chain plan [ROOT...]") {
		t.Errorf("opsctl help chain plan: exit %d %q\n%s", code, stderr, out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, stderr, code := testenv.Run(t, "", "completion", shell)
		if code != 0 || out == "" {
			t.Errorf("opsctl completion %s: exit %d %q", shell, code, stderr)
		}
	}
}

// Every command: bad input gets a one-line error that names the input and
// what was expected, not the message of a Go parser.
func TestBadFlagValuesSayWhatWasExpected(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"chain", "scan", "--dir", "examples", "--concurrency", "abc"}, `--concurrency "abc": expected a whole number`},
		{[]string{"sock", "capture", "--socket", "/run/x.sock", "--listen", "/tmp/p", "--port", "http"}, `--port "http": expected a whole number`},
		{[]string{"chain", "watch", "--state", "w.db", "--dir", "examples", "--interval", "daily"}, `--interval "daily": expected a duration like 30s, 15m or 6h`},
		{[]string{"imap-auth", "check", "--server", "imap.example.org", "--timeout", "10", "alice", "pw"}, `--timeout "10": expected a duration like 30s, 15m or 6h`},
		{[]string{"lvm", "cache", "remove", "vg/lv", "--dry-run=maybe"}, `--dry-run "maybe": expected true or false`},
		{[]string{"version", "-o", "yaml"}, `--output "yaml": expected one of text, json`},
	}
	for _, tc := range cases {
		out, stderr, code := testenv.Run(t, "", tc.args...)
		if code != cli.ExitUsage || out != "" {
			t.Errorf("opsctl %s: exit %d, stdout %q; want exit 2", strings.Join(tc.args, " "), code, out)
		}
		if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 || strings.HasPrefix(stderr, "opsctl: opsctl ") ||
			strings.Contains(stderr, "strconv.") || strings.Contains(stderr, "time: ") {
			t.Errorf("opsctl %s: stderr %q, want one line with %q", strings.Join(tc.args, " "), stderr, tc.want)
		}
	}
}

// An argument given to a command that takes none is named as such: it is
// not an unknown command (cobra.NoArgs says so).
func TestExtraArgumentIsNamedAsAnArgument(t *testing.T) {
	cases := [][]string{
		{"sock", "capture", "extra", "--socket", "/run/x.sock", "--listen", "/tmp/p"},
		{"pygrub", "patch", "extra"},
		{"pygrub", "scan", "extra"},
		{"imap-auth", "serve", "extra", "--socket", "/tmp/x.sock", "--server", "imap.example.org"},
		{"chain", "scan", "extra", "--dir", "examples"},
		{"version", "extra"},
	}
	for _, args := range cases {
		_, stderr, code := testenv.Run(t, "", args...)
		if code != cli.ExitUsage || !strings.Contains(stderr, `takes no arguments, got "extra"`) || strings.Contains(stderr, "unknown command") {
			t.Errorf("opsctl %s: exit %d, stderr %q; want exit 2 and `takes no arguments, got \"extra\"`", strings.Join(args, " "), code, stderr)
		}
	}
}

// Every command: -o json means JSON on stdout, --dry-run included.
func TestChainTriggerDryRunJSONIsJSON(t *testing.T) {
	fake := fakeImages(t)
	out, stderr, code := opsctlEnv(t, []string{"GITLAB_TOKEN=" + e2eToken}, "chain", "trigger", "img/base",
		"--gitlab-url", fake.URL(), "--group", "img", "--dry-run", "-o", "json")
	var got struct {
		DryRun  bool       `json:"dry_run"`
		Run     string     `json:"run"`
		Project string     `json:"project"`
		Ref     string     `json:"ref"`
		Waves   [][]string `json:"waves"`
	}
	if code != 0 {
		t.Fatalf("exit %d %q", code, stderr)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if !got.DryRun || got.Run == "" || got.Project != "img/base" || len(got.Waves) != 3 || got.Waves[0][0] != "img/base" {
		t.Errorf("dry run JSON %+v", got)
	}
}

// The README's first example runs on a fresh checkout with no server,
// `chain plan --dir examples/images` and `-o dot` of the same graph.
func TestReadmeFirstExampleRunsWithDot(t *testing.T) {
	images := filepath.Join(testenv.ModuleRoot(), "examples", "images")
	out, stderr, code := testenv.Run(t, "", "chain", "plan", "--dir", images)
	if code != 0 || out != "1: ops/base tools/linter\n2: ops/python ops/ruby\n3: ops/app\n4: ops/deploy\n" {
		t.Errorf("chain plan: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = testenv.Run(t, "", "chain", "plan", "--dir", images, "-o", "dot")
	if code != 0 || !strings.HasPrefix(out, "digraph chain {") || !strings.Contains(out, `"ops/base" -> "ops/ruby";`) ||
		!strings.Contains(out, `"ops/app" -> "ops/deploy";`) {
		t.Errorf("chain plan -o dot: exit %d\n%s%s", code, out, stderr)
	}
	scan, _, _ := testenv.Run(t, "", "chain", "scan", "--dir", images, "-o", "dot")
	if out != scan {
		t.Errorf("chain plan -o dot without ROOT is not the graph of chain scan -o dot:\n%s\nscan:\n%s", out, scan)
	}
	// docs/chain.md pipes it into Graphviz (`dot -Tpng`): it must draw it, every
	// edge (5 between projects, 2 from external images).
	if edges := graphvizEdges(t, out); edges != 7 {
		t.Errorf("graphviz drew %d edges of chain plan -o dot, want 7:\n%s", edges, out)
	}
	// With a root, the graph of what the plan builds.
	out, stderr, code = testenv.Run(t, "", "chain", "plan", "--dir", images, "ops/ruby", "-o", "dot")
	if code != 0 || !strings.Contains(out, `"ops/ruby" -> "ops/app";`) || strings.Contains(out, `"ops/python"`) ||
		strings.Contains(out, `"ops/base"`) {
		t.Errorf("chain plan ops/ruby -o dot: exit %d\n%s%s", code, out, stderr)
	}
	if edges := graphvizEdges(t, out); edges != 2 {
		t.Errorf("graphviz drew %d edges of chain plan ops/ruby -o dot, want 2 (ruby -> app -> deploy):\n%s", edges, out)
	}
}

// graphvizEdges runs dot as the README does (-Tsvg), failing the test when
// Graphviz rejects the input, and returns the number of edges it lays out.
func graphvizEdges(t *testing.T, dotText string) int {
	t.Helper()
	dot := testenv.Need(t, "dot", "graphviz")
	svg := exec.Command(dot, "-Tsvg")
	svg.Stdin = strings.NewReader(dotText)
	var errOut strings.Builder
	svg.Stderr = &errOut
	if out, err := svg.Output(); err != nil || errOut.Len() != 0 || !strings.Contains(string(out), "<svg") {
		t.Fatalf("dot -Tsvg: %v, stderr %q, on:\n%s", err, errOut.String(), dotText)
	}
	plain := exec.Command(dot, "-Tplain")
	plain.Stdin = strings.NewReader(dotText)
	out, err := plain.Output()
	if err != nil {
		t.Fatalf("dot -Tplain: %v, on:\n%s", err, dotText)
	}
	return strings.Count("\n"+string(out), "\nedge ")
}

// Every command: secrets never appear in error messages, not even the
// password of a URL given where credentials are refused.
func TestRefusedURLCredentialsAreNotEchoed(t *testing.T) {
	for _, url := range []string{"https://user:s3cretpw@gitlab.example.com", "https://user:s3cretpw@gitlab.example.com:bad"} {
		_, stderr, code := testenv.Run(t, "", "chain", "scan", "--gitlab-url", url, "--group", "g")
		if code != cli.ExitUsage || !strings.Contains(stderr, "--gitlab-url") || strings.Contains(stderr, "s3cretpw") {
			t.Errorf("--gitlab-url %s: exit %d, stderr %q; want exit 2, naming --gitlab-url, without the password", url, code, stderr)
		}
	}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("glpat-test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := testenv.Run(t, "", "chain", "hooks", "sync", "--gitlab-url", "http://127.0.0.1:1", "--group", "g",
		"--token-file", token, "--hook-url", "https://u:s3cretpw@chain.example.com:bad/hook", "--dry-run")
	if code != cli.ExitUsage || !strings.Contains(stderr, "--hook-url") || strings.Contains(stderr, "s3cretpw") {
		t.Errorf("bad --hook-url with a password: exit %d, stderr %q; want exit 2, naming --hook-url, without the password", code, stderr)
	}
}

// Every command: bad input gets one line naming it and what was expected;
// a missing lvm2 binary is not a Go exec error. Named by --lvm, it is a
// usage error (issue item 18); not on PATH, a failure.
func TestMissingLVMExecutableIsNamed(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "lvm")
	_, stderr, code := testenv.Run(t, "", "lvm", "--lvm", missing, "cache", "status")
	if code != cli.ExitUsage || !strings.Contains(stderr, `--lvm: lvm2 executable "`+missing+`" not found`) ||
		strings.Contains(stderr, "fork/exec") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("--lvm %s: exit %d, stderr %q", missing, code, stderr)
	}
	cmd := exec.Command(testenv.Opsctl(t), "lvm", "cache", "status")
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir(), "OPSCTL_LVM=")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != cli.ExitFailure || !strings.Contains(string(out), `lvm2 executable "lvm" not found on PATH`) ||
		strings.Contains(string(out), "exec: ") {
		t.Errorf("no lvm on PATH: exit %d, %q", cmd.ProcessState.ExitCode(), out)
	}
}
