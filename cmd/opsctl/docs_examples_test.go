package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// docExample is a fenced block of a doc page that shows a command line
// (`$ opsctl ...` or `# opsctl ...`) and what it prints.
type docExample struct {
	line int      // of the command line in the page
	args []string // after opsctl
	want []string // the lines shown below the command
}

// docExamples returns the examples of a page whose command line starts with
// prefix (e.g. "opsctl chain plan").
func docExamples(t *testing.T, page, prefix string) []docExample {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), page))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	var examples []docExample
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "```") || i+1 >= len(lines) {
			continue
		}
		first := lines[i+1]
		cmd := strings.TrimPrefix(strings.TrimPrefix(first, "$ "), "# ")
		cmd = strings.TrimPrefix(cmd, "bin/")
		ex := docExample{line: i + 2}
		j := i + 2
		for ; j < len(lines) && !strings.HasPrefix(lines[j], "```"); j++ {
			ex.want = append(ex.want, lines[j])
		}
		if cmd != first && strings.HasPrefix(cmd, prefix) {
			ex.args = strings.Fields(cmd)[1:]
			examples = append(examples, ex)
		}
		i = j
	}
	if len(examples) == 0 {
		t.Fatalf("%s: no example of %q", page, prefix)
	}
	return examples
}

// matchDocOutput compares output with the lines a page shows: "..." in a
// line stands for any text, a line that is only "..." for any lines.
func matchDocOutput(want []string, got string) bool {
	var b strings.Builder
	b.WriteString(`\A`)
	for _, line := range want {
		if strings.TrimSpace(line) == "..." {
			b.WriteString(`(?:.*\n)*?`)
			continue
		}
		parts := strings.Split(line, "...")
		for k := range parts {
			parts[k] = regexp.QuoteMeta(parts[k])
		}
		b.WriteString(strings.Join(parts, ".*") + `\n`)
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String()).MatchString(got)
}

// The `chain` examples of docs/chain.md run on examples/images and print
// what the page shows.
func TestDocChainExamplesPrintWhatThePageShows(t *testing.T) {
	images := filepath.Join(testenv.ModuleRoot(), "examples", "images")
	for _, prefix := range []string{"opsctl chain plan", "opsctl chain scan"} {
		for _, ex := range docExamples(t, "docs/chain.md", prefix) {
			args := append([]string{}, ex.args...)
			for k, a := range args {
				if a == "examples/images" {
					args[k] = images
				}
			}
			out, stderr, code := runForTest(args...)
			if code != 0 {
				t.Errorf("docs/chain.md:%d: opsctl %s: exit %d: %s", ex.line, strings.Join(ex.args, " "), code, stderr)
				continue
			}
			var ok bool
			if strings.Contains(strings.Join(args, " "), "-o json") {
				// Shown compact, printed indented.
				var a, b bytes.Buffer
				ok = json.Compact(&a, []byte(strings.Join(ex.want, "\n"))) == nil && json.Compact(&b, []byte(out)) == nil &&
					a.String() == b.String()
			} else {
				ok = matchDocOutput(ex.want, out)
			}
			if !ok {
				t.Errorf("docs/chain.md:%d: opsctl %s prints\n%s\nthe page shows\n%s", ex.line, strings.Join(ex.args, " "), out, strings.Join(ex.want, "\n"))
			}
		}
	}
}

// The `lvm cache` examples of docs/lvm.md, against lvm2 2.03.16's reports
// of the cached storage/slowlv they were taken from, and the kernel's
// status of its cache (fakeDmsetup).
func TestDocLVMExamplesPrintWhatThePageShows(t *testing.T) {
	lvm, dmsetup := fakeLVM(t), fakeDmsetup(t)
	for _, ex := range docExamples(t, "docs/lvm.md", "opsctl lvm cache") {
		args := append(append([]string{}, ex.args...), "--lvm", lvm, "--dmsetup", dmsetup, "--state-dir", t.TempDir())
		out, stderr, code := runForTest(args...)
		want := make([]string, len(ex.want))
		for k, line := range ex.want {
			line = strings.Replace(line, "+ lvm ", "+ "+lvm+" ", 1)
			want[k] = strings.Replace(line, "+ dmsetup ", "+ "+dmsetup+" ", 1)
		}
		if code != 0 || !matchDocOutput(want, out) {
			t.Errorf("docs/lvm.md:%d: opsctl %s: exit %d, prints\n%s%s\nthe page shows\n%s", ex.line, strings.Join(ex.args, " "), code, out, stderr, strings.Join(want, "\n"))
		}
	}
}

// The `pygrub check --xen 4.1` example of docs/pygrub.md, on a CentOS 7
// guest (grub.cfg in /boot/grub2, /boot on XFS) mounted on /mnt.
func TestDocPygrubCheckExamplePrintsWhatThePageShows(t *testing.T) {
	cfg, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "pkg/pygrubfix/testdata/corpus/centos7.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for name, data := range map[string]string{
		"boot/grub2/grub.cfg": string(cfg),
		"etc/fstab":           "/dev/mapper/centos-root / xfs defaults 0 0\nUUID=1234 /boot xfs defaults 0 0\n",
	} {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bls := pygrubDocBLSGuest(t)
	for _, ex := range docExamples(t, "docs/pygrub.md", "opsctl pygrub check") {
		args := append([]string{}, ex.args...)
		guest := root
		if strings.Contains(strings.Join(ex.want, "\n"), "blscfg") {
			guest = bls // the EL8/EL9 section's example
		}
		for k, a := range args {
			if a == "/mnt" {
				args[k] = guest
			}
		}
		out, stderr, code := runForTest(args...)
		out = strings.ReplaceAll(out, guest, "/mnt")
		if code != 1 || !matchDocOutput(ex.want, out) {
			t.Errorf("docs/pygrub.md:%d: opsctl %s: exit %d (want 1), prints\n%s%s\nthe page shows\n%s", ex.line, strings.Join(ex.args, " "), code, out, stderr, strings.Join(ex.want, "\n"))
		}
	}
}

// pygrubDocBLSGuest is the Rocky 9 guest of docs/pygrub.md's EL8/EL9
// section: /boot of its own, three entries, saved_entry the 9.2 kernel.
func pygrubDocBLSGuest(t *testing.T) string {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "pkg/pygrubfix/testdata/bls/rocky9-grub.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	const id = "3f9a1c2e4b5d6e7f8091a2b3c4d5e6f7"
	env := "# GRUB Environment Block\nsaved_entry=" + id + "-5.14.0-284.11.1.el9_2.x86_64\n"
	files := map[string]string{
		"/etc/fstab":           "/dev/mapper/rl-root / xfs defaults 0 0\nUUID=5d6e /boot ext4 defaults 1 2\n",
		"/boot/grub2/grub.cfg": string(cfg),
		"/boot/grub2/grubenv":  env,
	}
	for v, title := range map[string]string{
		"5.14.0-362.8.1.el9_3.x86_64":  "Rocky Linux (5.14.0-362.8.1.el9_3.x86_64) 9.3 (Blue Onyx)",
		"5.14.0-284.11.1.el9_2.x86_64": "Rocky Linux (5.14.0-284.11.1.el9_2.x86_64) 9.2 (Blue Onyx)",
		"0-rescue":                     "Rocky Linux (0-rescue-" + id + ") 9.3 (Blue Onyx)",
	} {
		files["/boot/loader/entries/"+id+"-"+v+".conf"] = "title " + title + "\nlinux /vmlinuz-" + v + "\ninitrd /initramfs-" + v + ".img\noptions root=/dev/mapper/rl-root ro\n"
	}
	pygrubWriteTree(t, root, files)
	return root
}
