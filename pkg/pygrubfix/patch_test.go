package pygrubfix

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/testenv"
)

// copyPygrub copies the installed pygrub 4.17 (script and grub module,
// with its xenfsimage extension linked) into a temporary tree shaped like
// /usr/lib/xen-4.17, and returns the copied script and GrubConf.py. The
// installed pygrub is never modified.
func copyPygrub(t *testing.T) (script, grubConf string) {
	t.Helper()
	needPygrub(t)
	root := filepath.Join(t.TempDir(), "xen-4.17")
	for _, dir := range []string{"bin", "lib/python/grub"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(from, to string, mode os.FileMode) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(pygrub417, filepath.Join(root, "bin/pygrub"), 0o755)
	mods, _ := filepath.Glob(filepath.Join(pygrubLib417, "grub/*.py"))
	for _, m := range mods {
		copyFile(m, filepath.Join(root, "lib/python/grub", filepath.Base(m)), 0o644)
	}
	exts, _ := filepath.Glob(filepath.Join(pygrubLib417, "xenfsimage*.so"))
	for _, e := range exts {
		if err := os.Symlink(e, filepath.Join(root, "lib/python", filepath.Base(e))); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "bin/pygrub"), filepath.Join(root, "lib/python/grub/GrubConf.py")
}

// revertTo41 turns GrubConf.py back into the parser of pygrub 4.1: greedy
// titles, no linux16/initrd16.
func revertTo41(t *testing.T, grubConf string) string {
	t.Helper()
	data, _ := os.ReadFile(grubConf)
	src := string(data)
	old := strings.Replace(src, fixedTitle, greedyTitle, 1)
	for _, l := range []string{"                'linux16': 'kernel',\n", "                'initrd16': 'initrd',\n"} {
		if !strings.Contains(old, l) {
			t.Fatalf("GrubConf.py has no %q line: the installed pygrub changed", l)
		}
		old = strings.Replace(old, l, "", 1)
	}
	if old == src || !strings.Contains(old, greedyTitle) {
		t.Fatal("could not revert GrubConf.py to the greedy form")
	}
	if err := os.WriteFile(grubConf, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(grubConf, 0o640); err != nil {
		t.Fatal(err)
	}
	return src
}

func TestPatchRestoresPygrub417FromGreedyCopy(t *testing.T) {
	script, grubConf := copyPygrub(t)
	original := revertTo41(t, grubConf)
	el7, _ := filepath.Abs("testdata/corpus/centos7.cfg")
	want := runIsconfig(t, pygrub417, el7)
	if !want.ok || want.kernel == "" {
		t.Fatalf("system pygrub on EL7: %+v", want)
	}
	if before := runIsconfig(t, script, el7); before.ok {
		t.Fatalf("the greedy copy boots EL7 (%+v): the revert did not take", before)
	}

	paths, err := FindParsers(script)
	if err != nil || len(paths) != 1 || paths[0] != grubConf {
		t.Fatalf("FindParsers(%s) = %v, %v; want %s", script, paths, err, grubConf)
	}
	plan, err := PlanPatch(paths)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Needed() || len(plan.Files[0].Changes) != 3 {
		t.Fatalf("plan: %+v", plan.Files[0].Changes)
	}
	diff := plan.Diff()
	for _, want := range []string{"--- " + grubConf, "-            title_match = re.match('^menuentry [\"\\'](.*)", "+            title_match = re.match('^menuentry [\"\\'](.*?)", "+                'linux16': 'kernel',", "+                'initrd16': 'initrd',"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	// The diff is one `patch` understands.
	patchBin := testenv.Need(t, "patch", "patch")
	cp := filepath.Join(t.TempDir(), "GrubConf.py")
	data, err := os.ReadFile(grubConf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(patchBin, "-s", cp)
	cmd.Stdin = strings.NewReader(diff)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("patch(1) rejects the diff: %v\n%s", err, out)
	} else if got, _ := os.ReadFile(cp); string(got) != original {
		t.Error("patch(1) with the diff does not give the 4.17 file")
	}

	backups, err := plan.Apply()
	if err != nil || len(backups) != 1 {
		t.Fatalf("apply: %v %v", backups, err)
	}
	got, _ := os.ReadFile(grubConf)
	if string(got) != original {
		t.Errorf("patched file differs from pygrub 4.17's GrubConf.py:\n%s", UnifiedDiff("4.17", "patched", original, string(got)))
	}
	if fi, _ := os.Stat(grubConf); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(backups[0]); !strings.Contains(string(b), greedyTitle) {
		t.Error("backup is not the original")
	}
	after := runIsconfig(t, script, el7)
	if !after.ok || after != want {
		t.Errorf("patched copy on EL7: %+v; system pygrub: %+v", after, want)
	}

	// Idempotent: nothing left to do, and nothing written.
	again, err := PlanPatch(paths)
	if err != nil || again.Needed() || again.Diff() != "" {
		t.Errorf("second plan: needed=%v err=%v", again.Needed(), err)
	}
}

func TestPatchRefusesUnexpectedCodeAndShowsTheLine(t *testing.T) {
	_, grubConf := copyPygrub(t)
	data, _ := os.ReadFile(grubConf)
	odd := strings.Replace(string(data), fixedTitle, `["\'](.+)["\'](.*){`, 1)
	os.WriteFile(grubConf, []byte(odd), 0o644)
	_, err := PlanPatch([]string{grubConf})
	var refusal *RefusalError
	if !errors.As(err, &refusal) || !strings.Contains(err.Error(), `(.+)`) || refusal.Line == 0 {
		t.Fatalf("got %v, want a refusal showing the line", err)
	}
	if got, _ := os.ReadFile(grubConf); string(got) != odd {
		t.Error("a refused file was changed")
	}

	noLinux := strings.Replace(string(data), "'linux16': 'kernel',\n", "", 1)
	noLinux = strings.Replace(noLinux, "'linux': 'kernel',", "'linux':'vmlinuz',", 1)
	os.WriteFile(grubConf, []byte(noLinux), 0o644)
	if _, err := PlanPatch([]string{grubConf}); !errors.As(err, &refusal) {
		t.Fatalf("missing 'linux' line: got %v, want a refusal", err)
	}
}

func TestUnifiedDiffHunks(t *testing.T) {
	old := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n"
	new := "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\n"
	want := "--- x\n+++ y\n@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n@@ -9,3 +9,4 @@\n i\n j\n k\n+l\n"
	if got := UnifiedDiff("x", "y", old, new); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if UnifiedDiff("x", "y", old, old) != "" {
		t.Error("equal texts give a diff")
	}
}

// TestFindParsersPatchesAScriptHoldingTheRegex covers pygrub builds whose
// script itself holds the menuentry regex, with no GrubConf.py beside it.
func TestFindParsersPatchesAScriptHoldingTheRegex(t *testing.T) {
	dir := t.TempDir()
	script := regexScript(t, dir, "pygrub", greedyTitle)
	paths, err := FindParsers(script)
	if err != nil || len(paths) != 1 || paths[0] != script {
		t.Fatalf("FindParsers = %v, %v", paths, err)
	}
	plan, err := PlanPatch(paths)
	if err != nil || len(plan.Files[0].Changes) != 1 || !strings.Contains(plan.Files[0].New, `(.*?)`) {
		t.Fatalf("plan %+v %v", plan, err)
	}
	if _, err := FindParsers(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing --pygrub: %v", err)
	}
}

// TestPatchThroughSymlinkedGrubConfPatchesTheTarget: --pygrub naming a
// GrubConf.py that is a symlink (python-support style installs) patches
// the file it points to and leaves the link in place.
func TestPatchThroughSymlinkedGrubConfPatchesTheTarget(t *testing.T) {
	_, grubConf := copyPygrub(t)
	original := revertTo41(t, grubConf)
	linkDir := t.TempDir()
	link := filepath.Join(linkDir, "GrubConf.py")
	if err := os.Symlink(grubConf, link); err != nil {
		t.Fatal(err)
	}
	plan := planPatchOf(t, link)
	if _, err := plan.Apply(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink %s was replaced by a file", link)
	}
	if got, _ := os.ReadFile(grubConf); string(got) != original {
		t.Error("the symlink's target was not patched")
	}
	if backups, _ := filepath.Glob(filepath.Join(linkDir, "GrubConf.py.orig*")); len(backups) != 0 {
		t.Errorf("backup beside the link, not beside the file: %v", backups)
	}
}

// TestPatchAddsLinux16WhenOnlyACommentNamesIt: a GrubConf.py that mentions
// 'linux16' in a comment but has no such command still gets the entries;
// the patch must not report it up to date.
func TestPatchAddsLinux16WhenOnlyACommentNamesIt(t *testing.T) {
	script, grubConf := copyPygrub(t)
	revertTo41(t, grubConf)
	data, _ := os.ReadFile(grubConf)
	commented := strings.Replace(string(data), "                'linux': 'kernel',\n",
		"                # EL7 writes 'linux16' and 'initrd16': local note\n                'linux': 'kernel',\n", 1)
	if err := os.WriteFile(grubConf, []byte(commented), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := planPatchOf(t, script)
	diff := plan.Diff()
	for _, want := range []string{"+                'linux16': 'kernel',", "+                'initrd16': 'initrd',"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	if _, err := plan.Apply(); err != nil {
		t.Fatal(err)
	}
	el7, _ := filepath.Abs("testdata/corpus/centos7.cfg")
	if got, want := runIsconfig(t, script, el7), runIsconfig(t, pygrub417, el7); !got.ok || got != want {
		t.Errorf("patched copy on EL7: %+v; system pygrub: %+v", got, want)
	}
}

// TestPatchKeepsTheFilesExtendedAttributes: the patched file and its backup
// keep the original's extended attributes, the SELinux label among them
// (on a RHEL host a file that lost it can no longer be read by confined
// programs).
func TestPatchKeepsTheFilesExtendedAttributes(t *testing.T) {
	script, grubConf := copyPygrub(t)
	revertTo41(t, grubConf)
	attrs := map[string]string{"user.opsctl-test": "keep me"}
	if err := unix.Setxattr(grubConf, "user.opsctl-test", []byte("keep me"), 0); err != nil {
		testenv.Missing(t, fmt.Sprintf("the test folder takes no user extended attributes: %v", err))
	}
	// Settable by root on ext4 even without SELinux loaded. The label is
	// what the test is for: without it, it is a missing condition, not a
	// smaller test.
	if err := unix.Setxattr(grubConf, "security.selinux", []byte("system_u:object_r:lib_t:s0"), 0); err != nil {
		testenv.Missing(t, fmt.Sprintf("cannot set a security.selinux label in the test folder (needs root, and a file system with security attributes): %v", err))
	}
	attrs["security.selinux"] = "system_u:object_r:lib_t:s0"
	plan := planPatchOf(t, script)
	backups, err := plan.Apply()
	if err != nil || len(backups) != 1 {
		t.Fatalf("apply: %v %v", backups, err)
	}
	for _, file := range []string{grubConf, backups[0]} {
		for name, want := range attrs {
			buf := make([]byte, 256)
			n, err := unix.Getxattr(file, name, buf)
			if err != nil || string(buf[:n]) != want {
				t.Errorf("%s: attribute %s = %q, %v; want %q", file, name, buf[:max(n, 0)], err, want)
			}
		}
	}

	// menu.lst rewritten in place keeps its attributes too.
	menu := filepath.Join(t.TempDir(), "menu.lst")
	writeMenuLst(t, "", menu, "default 0\n")
	if err := unix.Setxattr(menu, "user.opsctl-test", []byte("keep me"), 0); err != nil {
		t.Fatal(err)
	}
	writeMenuLst(t, "", menu, "default 1\n")
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(menu, "user.opsctl-test", buf); err != nil || string(buf[:n]) != "keep me" {
		t.Errorf("menu.lst lost its attribute: %q, %v", buf[:max(n, 0)], err)
	}
}

// regexScript writes dir/name, a pygrub script holding the menuentry regex
// itself (no GrubConf.py beside it), title its title pattern (greedyTitle,
// fixedTitle).
func regexScript(t *testing.T, dir, name, title string) string {
	t.Helper()
	script := filepath.Join(dir, name)
	src := "#!/usr/bin/python\nimport re\ndef parse(l):\n    title_match = re.match('^menuentry " + title + "', l)\n    return title_match\n"
	if err := os.WriteFile(script, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// planPatchOf plans the patch of the parsers pygrub script uses.
func planPatchOf(t *testing.T, script string) *PatchPlan {
	t.Helper()
	paths, err := FindParsers(script)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanPatch(paths)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestPatchApplyNamesEachFilesBackup: after Apply every file of the plan
// says where its original went, "" for a file that was up to date, so that
// a report pairs each file with its own backup.
func TestPatchApplyNamesEachFilesBackup(t *testing.T) {
	dir := t.TempDir()
	fixed, greedy := regexScript(t, dir, "a-fixed", fixedTitle), regexScript(t, dir, "b-greedy", greedyTitle)
	plan, err := PlanPatch([]string{fixed, greedy})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	backups, err := plan.Apply()
	if err != nil {
		t.Fatal(err)
	}
	if plan.Files[0].Backup != "" || plan.Files[1].Backup != greedy+".orig" || len(backups) != 1 || backups[0] != greedy+".orig" {
		t.Errorf("backups %v; files %q %q, want \"\" and %s.orig", backups, plan.Files[0].Backup, plan.Files[1].Backup, greedy)
	}
}
