package main

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

// `opsctl --version` prints what `opsctl version` prints (the same first
// line), and -v is its short form.
func TestVersionFlagPrintsWhatVersionPrints(t *testing.T) {
	want, _, code := runForTest("version")
	if code != 0 || !strings.HasPrefix(want, "opsctl "+version+"\n") {
		t.Fatalf("opsctl version: exit %d\n%s", code, want)
	}
	for _, flag := range []string{"--version", "-v"} {
		out, stderr, code := runForTest(flag)
		if code != 0 || out != want || stderr != "" {
			t.Errorf("opsctl %s: exit %d, stderr %q, stdout\n%s\nwant the output of opsctl version:\n%s", flag, code, stderr, out, want)
		}
	}
}

// -v is opsctl's --version: no command may give it another meaning.
func TestNoCommandUsesTheVersionShorthand(t *testing.T) {
	f := &cli.Factory{IO: &cli.IOStreams{}, Getenv: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler)}
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, set := range []*pflag.FlagSet{cmd.Flags(), cmd.PersistentFlags()} {
			if flag := set.ShorthandLookup("v"); flag != nil && !(cmd == cmd.Root() && flag.Name == "version") {
				t.Errorf("opsctl %s: -v is --%s", commandPath(cmd), flag.Name)
			}
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(f))
}

// A mistyped command gets cobra's suggestion in the same one line, exit 2.
func TestMistypedCommandSuggestsTheRightOne(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"chian", "plan"}, `unknown command "chian" for "opsctl"; did you mean "chain"?`},
		{[]string{"chain", "paln"}, `unknown command "paln" for "opsctl chain"; did you mean "plan"?`},
		{[]string{"lvm", "cache", "staus"}, `unknown command "staus" for "opsctl lvm cache"; did you mean "status"?`},
		{[]string{"imap-auth", "chek"}, `did you mean "check"?`},
		{[]string{"pygrub", "menu"}, `did you mean "menulst"?`},
		{[]string{"help", "chian"}, `did you mean "chain"?`},
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "opsctl"`},
	}
	for _, tc := range cases {
		_, stderr, code := runForTest(tc.args...)
		if code != cli.ExitUsage || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("opsctl %s: exit %d, stderr %q; want exit 2 and one line with %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	if _, stderr, _ := runForTest("frobnicate"); strings.Contains(stderr, "did you mean") {
		t.Errorf("opsctl frobnicate: %q suggests a command that is nothing like it", stderr)
	}
}

// goTypeName matches the words pflag prints for a flag's value when its
// usage names none: Go type names (string, stringArray, int, duration...).
var goTypeName = regexp.MustCompile(`^(string|int|uint|float|duration|bool|ip|bytes|count)\w*$`)

// Help shows what a flag's value is (FILE, N, DURATION, implicit|starttls),
// never the Go type pflag stores it in, nor cobra's --help[=false] noise.
func TestHelpNamesFlagValuesNotGoTypes(t *testing.T) {
	flagLine := regexp.MustCompile(`^\s+(?:-\w, )?--([\w-]+)(?:\[=[^\]]*\])?(?: (\S+))?`)
	var checked int
	for _, path := range commandPaths(t) {
		out, _, code := runForTest(append(path, "--help")...)
		if code != 0 {
			t.Fatalf("opsctl %s --help: exit %d", strings.Join(path, " "), code)
		}
		for _, line := range strings.Split(out, "\n") {
			m := flagLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			checked++
			if goTypeName.MatchString(m[2]) || strings.Contains(line, "[=") {
				t.Errorf("opsctl %s --help: --%s shows %q:\n%s", strings.Join(path, " "), m[1], m[2], line)
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d flag lines found in all help texts", checked)
	}
}

// runWithStderrFile runs the built opsctl with its stderr on a file, and
// JOURNAL_STREAM set to that file's device:inode when journal is true (as
// systemd sets it for a unit whose stderr is the journal).
func runWithStderrFile(t *testing.T, journal bool, args ...string) (stderr string, code int) {
	t.Helper()
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(errFile.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Opsctl(t), args...)
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM=")
	if journal {
		cmd.Env = append(cmd.Env, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	}
	cmd.Stderr = errFile
	_ = cmd.Run()
	data, err := os.ReadFile(errFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(data), cmd.ProcessState.ExitCode()
}

// Logs under systemd: when stderr is the journal, every line carries its
// syslog priority and no second timestamp; elsewhere slog's text format.
func TestStderrLinesCarryAPriorityUnderSystemd(t *testing.T) {
	// An lvm2 that fails: a debug line for its exec, then the error.
	failing := filepath.Join(t.TempDir(), "lvm")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho '  Volume group scan failed.' >&2\nexit 5\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--log-level", "debug", "lvm", "--lvm", failing, "cache", "status"}
	stderr, code := runWithStderrFile(t, true, args...)
	want := `<7>exec argv="` + failing + " vgs --reportformat json"
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code != cli.ExitFailure || len(lines) != 2 || !strings.HasPrefix(lines[0], want) ||
		lines[1] != `<3>opsctl: lvm cache status: vgs: `+failing+` vgs failed (exit 5): Volume group scan failed.` {
		t.Errorf("stderr on the journal: exit %d\n%s\nwant a line starting %q, then <3>opsctl: the error", code, stderr, want)
	}
	if strings.Contains(stderr, "time=") || strings.Contains(stderr, "level=") {
		t.Errorf("the journal got slog's time= and level=:\n%s", stderr)
	}

	stderr, code = runWithStderrFile(t, false, args...)
	lines = strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code != cli.ExitFailure || len(lines) != 2 || !strings.HasPrefix(lines[0], "time=") || !strings.Contains(lines[0], " level=DEBUG msg=exec argv=") ||
		!strings.HasPrefix(lines[1], "opsctl: lvm cache status: vgs: "+failing+" vgs failed (exit 5)") {
		t.Errorf("stderr on a file that is not the journal: exit %d\n%s", code, stderr)
	}
}

// `completion bash --help` told admins to write /etc/bash_completion.d/opsctl
// although the package installs the script already. Each shell's help names
// the file the package installs (packaging/nfpm.yaml) and no other place
// to write as root.
func TestCompletionHelpNamesTheInstalledScripts(t *testing.T) {
	nfpm, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "packaging", "nfpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	installed := map[string]string{}
	for _, m := range regexp.MustCompile(`src: build/pkg/completions/(\S+)\s+dst: (\S+)`).FindAllStringSubmatch(string(nfpm), -1) {
		installed[map[string]string{"opsctl.bash": "bash", "_opsctl": "zsh", "opsctl.fish": "fish"}[m[1]]] = m[2]
	}
	if len(installed) != 3 {
		t.Fatalf("nfpm.yaml installs completions %v, want bash, zsh and fish", installed)
	}
	overview, _, _ := runForTest("completion", "--help")
	for shell, path := range installed {
		help, _, code := runForTest("completion", shell, "--help")
		if code != 0 || !strings.Contains(help, path) || !strings.Contains(overview, path) {
			t.Errorf("completion %s --help (and completion --help) do not name %s, which the package installs:\n%s", shell, path, help)
		}
		for _, wrong := range []string{"/etc/bash_completion.d", "brew", "macOS"} {
			if strings.Contains(help, wrong) {
				t.Errorf("completion %s --help says %q:\n%s", shell, wrong, help)
			}
		}
	}
	if root, _, _ := runForTest("--help"); strings.Contains(root, "bash_completion.d") {
		t.Errorf("opsctl --help still writes /etc/bash_completion.d:\n%s", root)
	}
}

// A warning about the input (not a log record) carries its priority in the
// journal too: one format for warnings wherever they come from.
func TestInputWarningsCarryAPriorityUnderSystemd(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, code := runWithStderrFile(t, true, "chain", "scan", "--dir", dir)
	want := "<4>warning: --dir " + dir + ": the folder itself holds a project file; only its subfolders are projects\n"
	if code != 0 || stderr != want {
		t.Errorf("chain scan's warning in the journal: exit %d, stderr %q; want %q", code, stderr, want)
	}
	stderr, code = runWithStderrFile(t, false, "chain", "scan", "--dir", dir)
	if code != 0 || stderr != strings.TrimPrefix(want, "<4>") {
		t.Errorf("chain scan's warning on a file: exit %d, stderr %q", code, stderr)
	}
}
