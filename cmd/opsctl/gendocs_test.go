package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/testenv"
)

// genManPages runs `opsctl gen-docs --man DIR` in-process and returns DIR.
func genManPages(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "man")
	if _, stderr, code := runForTest("gen-docs", "--man", dir); code != 0 {
		t.Fatalf("gen-docs --man: exit %d %s", code, stderr)
	}
	return dir
}

// renderMan formats a page as an admin reads it: man(1), 80 columns. A
// warning of groff or man fails the test.
func renderMan(t *testing.T, page string) string {
	t.Helper()
	cmd := exec.Command(testenv.Need(t, "man", "man-db"), "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8", "MAN_KEEP_FORMATTING=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("man --warnings -l %s: %v\n%s", filepath.Base(page), err, stderr.String())
	}
	return string(out)
}

// manCommands are the commands that get a page: every command a user can
// run, as gen-docs names its page.
func manCommands(t *testing.T) map[string]*cobra.Command {
	t.Helper()
	commands := map[string]*cobra.Command{}
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		if cmd.IsAvailableCommand() || cmd == cmd.Root() {
			commands[strings.ReplaceAll(cmd.CommandPath(), " ", "-")] = cmd
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	f := &cli.Factory{IO: &cli.IOStreams{}, Version: "test", Getenv: func(string) string { return "" }}
	walk(newRootCmd(f))
	return commands
}

func words(s string) string { return strings.Join(strings.Fields(s), " ") }

// Man pages keep the text of the help: nothing taken for markup and lost
// (`<a port of its own>`), nothing turned into a link (`[:PORT] (...)`),
// indented tables as they are in the help, every example line and every
// flag's help; no `--help[=false]`, no Go type names.
func TestManPagesKeepTheHelpText(t *testing.T) {
	dir := genManPages(t)
	commands := manCommands(t)
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	var names []string
	for _, page := range pages {
		names = append(names, strings.TrimSuffix(filepath.Base(page), ".1"))
	}
	var want []string
	for name := range commands {
		want = append(want, name)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("pages %q, want one per command %q", names, want)
	}

	for name, cmd := range commands {
		rendered := renderMan(t, filepath.Join(dir, name+".1"))
		flat := words(rendered)
		renderedLines := strings.Split(rendered, "\n")
		for _, block := range strings.Split(cmd.Long, "\n\n") {
			var prose []string
			var literal []string
			for _, line := range strings.Split(block, "\n") {
				if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
					literal = append(literal, line)
				} else {
					prose = append(prose, line)
				}
			}
			if p := words(strings.Join(prose, " ")); !strings.Contains(flat, p) {
				t.Errorf("%s(1) lost text of the help:\n  %s\nin:\n%s", name, p, rendered)
			}
			wantLiteralLines(t, name, literal, renderedLines)
		}
		wantLiteralLines(t, name, strings.Split(cmd.Example, "\n"), renderedLines)
		if !strings.Contains(flat, words(cmd.Short)) {
			t.Errorf("%s(1) lost the short description %q", name, cmd.Short)
		}
		for _, set := range []*pflag.FlagSet{cmd.NonInheritedFlags(), cmd.InheritedFlags()} {
			set.VisitAll(func(flag *pflag.Flag) {
				if flag.Hidden || (flag.Name == "help" && cmd != cmd.Root()) {
					return
				}
				valueName, usage := pflag.UnquoteUsage(flag)
				if !strings.Contains(flat, words(usage)) {
					t.Errorf("%s(1): --%s lost its help %q", name, flag.Name, usage)
				}
				if valueName != "" && !strings.Contains(rendered, "--"+flag.Name+" "+valueName) {
					t.Errorf("%s(1): --%s is not shown with its value %s", name, flag.Name, valueName)
				}
			})
		}
		if m := regexp.MustCompile(`--[\w-]+(\[=[^\]]*\]|=\S*|\s(string|int|uint|float|duration|bool)\w*\b)`).FindString(rendered); m != "" {
			t.Errorf("%s(1) shows %q: pflag noise or a Go type name", name, m)
		}
		for _, section := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "ENVIRONMENT", "SEE ALSO"} {
			if !strings.Contains(rendered, "\n"+section+"\n") {
				t.Errorf("%s(1) has no %s section", name, section)
			}
		}
	}
}

// wantLiteralLines checks that lines written indented in the help (a table,
// an example) are lines of the page as they are, each indented by the same
// amount more than in the help: columns stay aligned.
func wantLiteralLines(t *testing.T, page string, lines []string, rendered []string) {
	t.Helper()
	shift := -1
	for _, line := range lines {
		text := strings.TrimSpace(line)
		if text == "" {
			continue
		}
		indent := len(strings.ReplaceAll(line, "\t", "        ")) - len(strings.TrimLeft(line, " \t"))
		found := false
		for _, r := range rendered {
			if strings.TrimSpace(r) != text {
				continue
			}
			found = true
			s := len(r) - len(strings.TrimLeft(r, " ")) - indent
			if shift == -1 {
				shift = s
			} else if s != shift {
				t.Errorf("%s(1): %q is indented %d more than in the help, the lines before it %d: columns moved", page, text, s, shift)
			}
			break
		}
		if !found {
			t.Errorf("%s(1) does not have the line %q as it is in the help", page, text)
		}
	}
}

// The pages of issue 19, as they must read.
func TestManPagesOfIssue19(t *testing.T) {
	dir := genManPages(t)
	sock := words(renderMan(t, filepath.Join(dir, "opsctl-sock-capture.1")))
	if !strings.Contains(sock, "from 127.0.0.1:<a port of its own> to 127.0.0.1:--port (default 80)") {
		t.Errorf("opsctl-sock-capture(1) lost <a port of its own>:\n%s", sock)
	}
	check := words(renderMan(t, filepath.Join(dir, "opsctl-imap-auth-check.1")))
	if !strings.Contains(check, "IMAP server HOST[:PORT] (port 993 for implicit TLS, 143 for starttls)") || strings.ContainsAny(check, "⟨⟩") {
		t.Errorf("opsctl-imap-auth-check(1): --server's help became a link:\n%s", check)
	}
	root := renderMan(t, filepath.Join(dir, "opsctl.1"))
	for _, v := range []string{"GITLAB_TOKEN", "OPSCTL_LVM", "OPSCTL_CHAIN_SERVER", "JOURNAL_STREAM", "LISTEN_FDS"} {
		if _, env, _ := strings.Cut(root, "\nENVIRONMENT\n"); !strings.Contains(env, v) {
			t.Errorf("opsctl(1) ENVIRONMENT does not name %s", v)
		}
	}
	if _, status, _ := strings.Cut(root, "\nEXIT STATUS\n"); !strings.Contains(words(status), "does not exist or is not the kind expected") {
		t.Errorf("opsctl(1) EXIT STATUS does not give the rule for missing files:\n%s", status)
	}
}

// ENVIRONMENT names every variable opsctl reads, so a new one cannot go
// undocumented: the literal names passed to a Getenv in cmd/ and pkg/.
func TestManPageEnvironmentNamesWhatOpsctlReads(t *testing.T) {
	// Not for users: a crash point of the chain engine's restart tests, and
	// the build date of these pages (gen-docs is for packaging only).
	notForUsers := []string{"OPSCTL_CHAIN_CRASH_AT", "SOURCE_DATE_EPOCH"}
	getenv := regexp.MustCompile(`(?i)getenv\("([A-Z_]+)"\)`)
	var read []string
	for _, tree := range []string{"cmd", "pkg", "internal/cli"} {
		filepath.WalkDir(filepath.Join(testenv.ModuleRoot(), tree), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, "sockbench") {
				return err
			}
			src, err := os.ReadFile(path)
			for _, m := range getenv.FindAllStringSubmatch(string(src), -1) {
				if !slices.Contains(read, m[1]) && !slices.Contains(notForUsers, m[1]) {
					read = append(read, m[1])
				}
			}
			return err
		})
	}
	if len(read) < 5 {
		t.Fatalf("found only %q read from the environment", read)
	}
	_, env, _ := strings.Cut(renderMan(t, filepath.Join(genManPages(t), "opsctl.1")), "\nENVIRONMENT\n")
	env, _, _ = strings.Cut(env, "\nEXAMPLES\n")
	for _, v := range read {
		if !strings.Contains(env, v) {
			t.Errorf("opsctl reads $%s; opsctl(1) ENVIRONMENT does not say so:\n%s", v, env)
		}
	}
}

// gen-docs runs as root under `sudo make install`: a symbolic link or a
// FIFO planted where it writes a page is refused, never written through or
// replaced; a missing parent folder is refused, never created; pages are
// 0644 whatever the umask.
func TestGenDocsWritesOnlyRegularFilesItMayReplace(t *testing.T) {
	tmp := t.TempDir()
	victim := filepath.Join(tmp, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	linked := filepath.Join(tmp, "linked")
	os.Mkdir(linked, 0o755)
	if err := os.Symlink(victim, filepath.Join(linked, "opsctl.1")); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runForTest("gen-docs", "--man", linked)
	if data, _ := os.ReadFile(victim); code != cli.ExitUsage || string(data) != "precious\n" || !strings.Contains(stderr, "is a symbolic link") {
		t.Errorf("a symlink at a page's name: exit %d %q, victim now %q", code, stderr, data)
	}
	if target, err := os.Readlink(filepath.Join(linked, "opsctl.1")); err != nil || target != victim {
		t.Errorf("the symlink was replaced: %q %v", target, err)
	}

	fifo := filepath.Join(tmp, "fifo")
	os.Mkdir(fifo, 0o755)
	if err := syscall.Mkfifo(filepath.Join(fifo, "opsctl.fish"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runForTest("gen-docs", "--completions", fifo)
	if info, err := os.Lstat(filepath.Join(fifo, "opsctl.fish")); code != cli.ExitUsage || err != nil || info.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("a FIFO at a completion's name: exit %d %q, now %v %v", code, stderr, info, err)
	}

	if err := os.Symlink(tmp, filepath.Join(tmp, "dirlink")); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code = runForTest("gen-docs", "--man", filepath.Join(tmp, "dirlink")); code != cli.ExitUsage || !strings.Contains(stderr, "--man") {
		t.Errorf("--man naming a symlink to a folder: exit %d %q", code, stderr)
	}

	missing := filepath.Join(tmp, "no", "such", "man")
	if _, stderr, code = runForTest("gen-docs", "--man", missing); code != cli.ExitUsage || !strings.Contains(stderr, "does not exist") {
		t.Errorf("--man under a missing folder: exit %d %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(tmp, "no")); err == nil {
		t.Error("gen-docs created the missing folders")
	}

	out := filepath.Join(tmp, "out")
	os.MkdirAll(filepath.Join(out, "man"), 0o755)
	if err := os.WriteFile(filepath.Join(out, "man", "opsctl.1"), []byte("old page"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	_, stderr, code = runForTest("gen-docs", "--man", filepath.Join(out, "man"), "--completions", out)
	syscall.Umask(old)
	if code != 0 {
		t.Fatalf("gen-docs: exit %d %q", code, stderr)
	}
	for _, name := range []string{"man/opsctl.1", "man/opsctl-chain-plan.1", "opsctl.bash", "_opsctl", "opsctl.fish"} {
		if info, err := os.Lstat(filepath.Join(out, name)); err != nil || !info.Mode().IsRegular() || info.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v, want a regular file of mode 0644", name, info, err)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 4 {
		t.Errorf("gen-docs left %d entries in the folder (temporary files?), want 4", len(entries))
	}
	if pages, _ := os.ReadDir(filepath.Join(out, "man")); len(pages) != len(manCommands(t)) {
		t.Errorf("%d files in the man folder, want one page per command (%d)", len(pages), len(manCommands(t)))
	}
	if page, _ := os.ReadFile(filepath.Join(out, "man", "opsctl.1")); !strings.Contains(string(page), ".SH EXIT STATUS") {
		t.Errorf("the old opsctl.1 was not replaced: %q", page)
	}
}

// README's "Exit status", which every docs page points to, and the man
// pages' EXIT STATUS give the same codes and the same rule.
func TestReadmeExitStatusMatchesTheManPages(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, found := strings.Cut(string(readme), "\n## Exit status\n")
	section, _, _ = strings.Cut(section, "\n## ")
	if !found {
		t.Fatal("README.md has no Exit status section")
	}
	var codes []string
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllStringSubmatch(section, -1) {
		codes = append(codes, m[1])
	}
	var manCodes []string
	for _, s := range exitStatuses {
		manCodes = append(manCodes, s.code)
	}
	if !slices.Equal(codes, manCodes) {
		t.Errorf("README's Exit status lists %q, the man pages %q", codes, manCodes)
	}
	for _, rule := range []string{"does not exist or is not the kind expected", "cannot be read or written"} {
		if !strings.Contains(words(section), rule) {
			t.Errorf("README's Exit status does not say %q", rule)
		}
	}
}
