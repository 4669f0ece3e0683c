package pygrubfix

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// The real pygrub of Debian 12 is the reference for --xen 4.17.
const (
	pygrub417    = "/usr/lib/xen-4.17/bin/pygrub"
	pygrubLib417 = "/usr/lib/xen-4.17/lib/python"
)

func needPygrub(t testing.TB) string {
	t.Helper()
	testenv.Need(t, "python3", "python3")
	return testenv.Need(t, pygrub417, "xen-utils-4.17")
}

// pygrubPython is the interpreter pygrub runs with (its #! line), so that
// the oracle has pygrub's str semantics, not those of another python3.
func pygrubPython(t testing.TB) string {
	t.Helper()
	needPygrub(t)
	data, _ := os.ReadFile(pygrub417)
	first, _, _ := strings.Cut(string(data), "\n")
	if interp, ok := strings.CutPrefix(first, "#!"); ok {
		if f := strings.Fields(interp); len(f) == 1 {
			if _, err := os.Stat(f[0]); err == nil {
				return f[0]
			}
		}
	}
	return testenv.Need(t, "python3", "python3")
}

// pyImage is one entry as the installed GrubConf.py parses it.
type pyImage struct {
	Title  string  `json:"title"`
	Kernel *string `json:"kernel"`
	Initrd *string `json:"initrd"`
	Args   *string `json:"args"`
}

type pyParse struct {
	Error   string    `json:"error"`
	Images  []pyImage `json:"images"`
	Default int       `json:"default"`
}

// dumpScript loads pygrub's own parser modules (not a copy) and prints what
// they make of a file.
const dumpScript = `
import sys, json
sys.path.insert(0, sys.argv[1])
from grub import GrubConf, ExtLinuxConf
cls = {"grub2": GrubConf.Grub2ConfigFile, "grub-legacy": GrubConf.GrubConfigFile,
       "extlinux": ExtLinuxConf.ExtLinuxConfigFile}[sys.argv[2]]
try:
    cf = cls(sys.argv[3])
except Exception as e:
    print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
    sys.exit(0)
out = []
for i in cf.images:
    out.append({"title": i.title,
                "kernel": None if i.kernel is None else i.kernel[1],
                "initrd": None if i.initrd is None else i.initrd[1],
                "args": i.args})
print(json.dumps({"images": out, "default": cf.default}))
`

func pythonParse(t *testing.T, lib string, p Parser, file string) pyParse {
	t.Helper()
	out, err := exec.Command(pygrubPython(t), "-B", "-c", dumpScript, lib, string(p), file).Output()
	if err != nil {
		t.Fatalf("python GrubConf on %s: %v", file, err)
	}
	var res pyParse
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python GrubConf on %s: %v\n%s", file, err, out)
	}
	return res
}

// isconfigResult is what `pygrub --isconfig` prints for the chosen entry.
type isconfigResult struct {
	ok                   bool
	kernel, initrd, args string
	stderr               string
}

func runIsconfig(t *testing.T, pygrub, file string, extra ...string) isconfigResult {
	t.Helper()
	args := append([]string{"--isconfig", "-q", "-n", "--output-directory", t.TempDir()}, extra...)
	cmd := exec.Command(pygrub, append(args, file)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := isconfigResult{ok: err == nil, stderr: stderr.String()}
	for _, line := range strings.Split(stdout.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "  kernel: "):
			res.kernel = strings.TrimPrefix(line, "  kernel: ")
		case strings.HasPrefix(line, "  initrd: "):
			res.initrd = strings.TrimPrefix(line, "  initrd: ")
		case strings.HasPrefix(line, "  args: "):
			res.args = strings.TrimPrefix(line, "  args: ")
		}
	}
	return res
}

func corpusFiles(t *testing.T) []string {
	files, err := filepath.Glob("testdata/corpus/*")
	if err != nil || len(files) < 8 {
		t.Fatalf("corpus: %v (%d files)", err, len(files))
	}
	return files
}

// TestCheck417MatchesPygrubOnCorpus holds check --xen 4.17 to the real
// pygrub 4.17: every title, kernel, initrd and args as its GrubConf.py
// parses them, and the default entry as `pygrub --isconfig` boots it.
func TestCheck417MatchesPygrubOnCorpus(t *testing.T) {
	pygrub := needPygrub(t)
	for _, file := range corpusFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			abs, _ := filepath.Abs(file)
			rep, err := Check(abs, Xen417)
			if err != nil {
				t.Fatal(err)
			}
			py := pythonParse(t, pygrubLib417, rep.Parser, abs)
			if py.Error != "" {
				if !hasProblem(rep, ProblemParseError) || rep.Bootable {
					t.Fatalf("pygrub fails (%s) but check reports %+v", py.Error, rep)
				}
				return
			}
			if hasProblem(rep, ProblemParseError) {
				t.Fatalf("check reports a parse error pygrub does not have: %+v", rep.Problems)
			}
			if len(rep.Entries) != len(py.Images) {
				t.Fatalf("%d entries, pygrub has %d", len(rep.Entries), len(py.Images))
			}
			for i, img := range py.Images {
				got := rep.Entries[i]
				if got.Title != img.Title {
					t.Errorf("entry %d title %q, pygrub %q", i, got.Title, img.Title)
				}
				if (img.Kernel != nil) != got.HasKernel || (img.Kernel != nil && *img.Kernel != got.Kernel) {
					t.Errorf("entry %d kernel %q (%v), pygrub %v", i, got.Kernel, got.HasKernel, deref(img.Kernel))
				}
				if (img.Initrd != nil) != got.HasInitrd || (img.Initrd != nil && *img.Initrd != got.Initrd) {
					t.Errorf("entry %d initrd %q, pygrub %v", i, got.Initrd, deref(img.Initrd))
				}
				if deref(img.Args) != got.Args {
					t.Errorf("entry %d args %q, pygrub %q", i, got.Args, deref(img.Args))
				}
			}
			if rep.Parser != ParserGrub2 {
				return // --isconfig always uses the grub2 parser; see the image test
			}
			res := runIsconfig(t, pygrub, abs)
			if !res.ok {
				if rep.Bootable {
					t.Fatalf("pygrub --isconfig fails but check says bootable:\n%s", res.stderr)
				}
				return
			}
			if rep.Default < 0 {
				t.Fatalf("pygrub boots %q, check has no default", res.kernel)
			}
			def := rep.Entries[rep.Default]
			if def.Kernel != res.kernel || def.Initrd != res.initrd || def.Args != res.args {
				t.Errorf("default %d = %q %q %q; pygrub --isconfig boots %q %q %q", rep.Default, def.Kernel, def.Initrd, def.Args, res.kernel, res.initrd, res.args)
			}
			if rep.Bootable != (res.kernel != "") {
				t.Errorf("bootable %v, pygrub kernel %q", rep.Bootable, res.kernel)
			}
			// Every entry by index, as `--entry=N` picks it.
			for i, e := range rep.Entries {
				if !e.HasKernel {
					continue
				}
				res := runIsconfig(t, pygrub, abs, "--entry="+itoa(i))
				if !res.ok || res.kernel != e.Kernel || res.args != e.Args {
					t.Errorf("--entry=%d: pygrub %q %q, check %q %q", i, res.kernel, res.args, e.Kernel, e.Args)
				}
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func hasProblem(r *Report, code string) bool {
	for _, p := range r.Problems {
		if p.Code == code {
			return true
		}
	}
	return false
}

// TestCheck41TitlesMatchPythonGreedyRegex holds the 4.1 title emulation to
// Python's re with the regex of pygrub 4.1.0-4.1.2, on every menuentry line
// of the corpus and on the lines that trip the greedy form.
func TestCheck41TitlesMatchPythonGreedyRegex(t *testing.T) {
	testenv.Need(t, "python3", "python3")
	var lines []string
	for _, file := range corpusFiles(t) {
		data, _ := os.ReadFile(file)
		for _, l := range strings.Split(string(data), "\n") {
			if l = pyStrip(l); strings.HasPrefix(l, "menuentry") {
				lines = append(lines, l)
			}
		}
	}
	lines = append(lines,
		`menuentry 'a' 'b' 'c' {`,
		`menuentry "x" --id 'y' { z }`,
		`menuentry 'no space'{`,
		`menuentry '' {`,
		`menuentry 'é' ' {'`,
	)
	in, _ := json.Marshal(lines)
	script := `
import sys, json, re
out = []
for l in json.load(sys.stdin):
    row = []
    for pat in (sys.argv[1], sys.argv[2]):
        m = re.match(pat, l)
        row.append(None if m is None else m.group(1))
    out.append(row)
print(json.dumps(out))
`
	cmd := exec.Command(pygrubPython(t), "-B", "-c", script, GreedyTitlePattern, FixedTitlePattern)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var want [][2]*string
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	differ := 0
	for i, l := range lines {
		for j, rel := range []*Release{Xen41, Xen417} {
			m := rel.title.FindStringSubmatch(l)
			if (m == nil) != (want[i][j] == nil) || (m != nil && m[1] != *want[i][j]) {
				t.Errorf("%s on %q: got %v, python %v", rel.Name, l, m, deref(want[i][j]))
			}
		}
		if want[i][0] != nil && want[i][1] != nil && *want[i][0] != *want[i][1] {
			differ++
		}
	}
	if differ < 3 {
		t.Errorf("only %d lines where the greedy title differs: the corpus does not exercise the bug", differ)
	}
}

// TestGreedyTitleProblemOnlyFor41 makes sure the EL7 title problem is
// named for 4.1 with its fix and not for 4.17.
func TestGreedyTitleProblemOnlyFor41(t *testing.T) {
	old, err := Check("testdata/corpus/centos7.cfg", Xen41)
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{ProblemGreedyTitle, ProblemLinux16} {
		if !hasProblem(old, code) {
			t.Errorf("4.1: no %s problem in %+v", code, old.Problems)
		}
	}
	if old.Bootable {
		t.Error("4.1 would boot an EL7 linux16 config")
	}
	if !regexp.MustCompile(`opsctl pygrub patch`).MatchString(problemText(old)) {
		t.Errorf("4.1 problems name no fix: %s", problemText(old))
	}
	cur, _ := Check("testdata/corpus/centos7.cfg", Xen417)
	if len(cur.Problems) != 0 || !cur.Bootable {
		t.Errorf("4.17 on EL7: %+v", cur)
	}
}

func problemText(r *Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		b.WriteString(p.Code + ": " + p.Message + "\n")
	}
	return b.String()
}
