package main

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/testenv"
)

func runForTest(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	streams := &cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	code = run(args, streams, func(string) string { return "" })
	return out.String(), errOut.String(), code
}

func TestHelpListsTheFiveGroups(t *testing.T) {
	out, _, code := runForTest("--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, group := range []string{"chain", "lvm", "sock", "pygrub", "imap-auth", "version", "completion"} {
		if !strings.Contains(out, "\n  "+group+" ") {
			t.Errorf("--help does not list %q:\n%s", group, out)
		}
	}
}

func TestExitCodesOfUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"version", "--bogus"}, "unknown flag: --bogus"},
		{"extra argument", []string{"version", "extra"}, `takes no arguments, got "extra"`},
		{"bad output format", []string{"version", "-o", "yaml"}, "expected one of text, json"},
		{"bad log level", []string{"--log-level", "loud", "version"}, `--log-level "loud"`},
		{"no subcommand", []string{}, ""},
		{"missing required flag", []string{"chain", "watch", "--dir", "x"}, `required flag(s) "state" not set`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runForTest(tc.args...)
			if code != cli.ExitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, cli.ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && tc.want != "" {
				t.Errorf("error is more than one line: %q", stderr)
			}
		})
	}
}

func TestVersionJSONIsOnStdoutOnly(t *testing.T) {
	out, stderr, code := runForTest("version", "-o", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var info versionInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if info.Version != version || !strings.HasPrefix(info.GoVersion, "go1.") {
		t.Errorf("version info %+v", info)
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{"bash": "__opsctl_", "zsh": "#compdef opsctl", "fish": "complete -c opsctl"} {
		out, _, code := runForTest("completion", shell)
		if code != 0 || !strings.Contains(out, marker) {
			t.Errorf("completion %s: exit %d, no %q in output", shell, code, marker)
		}
	}
}

func TestBuiltBinaryIsStaticAndVersioned(t *testing.T) {
	out, _, code := testenv.Run(t, "", "version")
	first, _, _ := strings.Cut(out, "\n")
	v, ok := strings.CutPrefix(first, "opsctl ")
	if code != 0 || !ok || v == "" || strings.ContainsAny(v, " \t") || !strings.Contains(out, "\ncgo: 0\n") {
		t.Fatalf("opsctl version: exit %d, want \"opsctl VERSION\" and cgo: 0\n%s", code, out)
	}
	// Static: no program interpreter, no shared library needed.
	bin, err := elf.Open(testenv.Opsctl(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, err := bin.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
}
