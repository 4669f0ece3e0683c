package main

// Attacks on the files pygrub reads and writes as root (issue 19, items 2,
// 8, 10, 11, 13 and 18): symlinks leaving a guest, device nodes and FIFOs
// where a file is wanted, /dev/zero, files over the size limit, missing
// folders, files opsctl did not write, terminal escapes in guest titles.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/pygrubfix"
)

// pygrubHangGuard bounds a command that must return at once. It is not a
// timing assertion: before the fix a FIFO without a writer blocked open(2)
// for ever and /dev/zero was read until memory ran out, and a test must
// fail on that rather than hang until go test's own time-out.
const pygrubHangGuard = 2 * time.Minute

// pygrubRunGuarded runs opsctl in dir (the test's working folder when "")
// with its address space limited to 4 GiB and its run time to
// pygrubHangGuard; a run cut short fails the test.
func pygrubRunGuarded(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pygrubHangGuard)
	defer cancel()
	sh := testenv.Need(t, "sh", "dash")
	cmd := exec.CommandContext(ctx, sh, append([]string{"-c", `ulimit -v 4194304 && exec "$0" "$@"`, testenv.Opsctl(t)}, args...)...)
	cmd.Dir = dir
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("opsctl %s: still running after %s (a FIFO or device read without end?)", strings.Join(args, " "), pygrubHangGuard)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		code = exitErr.ExitCode()
	default:
		t.Fatalf("opsctl %s: %v (stderr %q)", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), code
}

// pygrubWantRefusal checks a refusal: the exit code and one line on stderr
// holding each of wants.
func pygrubWantRefusal(t *testing.T, args []string, stderr string, code, wantCode int, wants ...string) {
	t.Helper()
	line := strings.TrimSuffix(stderr, "\n")
	if code != wantCode || line == "" || strings.Contains(line, "\n") {
		t.Errorf("opsctl %s: exit %d, stderr %q; want exit %d and one line", strings.Join(args, " "), code, stderr, wantCode)
		return
	}
	for _, want := range wants {
		if !strings.Contains(line, want) {
			t.Errorf("opsctl %s: stderr %q lacks %q", strings.Join(args, " "), line, want)
		}
	}
}

// pygrubEL7Guest is a guest root folder holding the Fedora 20 grub.cfg
// (3 entries, default 1) in /boot/grub2.
func pygrubEL7Guest(t *testing.T) string {
	t.Helper()
	return pygrubGrub2Guest(t, "fedora20-numeric-default.cfg")
}

func pygrubMustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func pygrubRel(t *testing.T, from, to string) string {
	t.Helper()
	rel, err := filepath.Rel(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

func pygrubFileIs(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s now holds %q (%v); want it untouched: %q", path, got, err, want)
	}
}

// TestPygrubMenuLstWriteStaysInsideTheGuest: -w under --root is resolved
// in the guest, as a chroot would: a symlink in the guest (absolute or
// relative, for the folder or for the file) never leads to the host's
// files, and a -w outside --root is refused.
func TestPygrubMenuLstWriteStaysInsideTheGuest(t *testing.T) {
	const hostText = "# the host's own menu.lst\n"
	cases := []struct {
		name  string
		setup func(t *testing.T, root, hostDir string) // hostDir holds the host's menu.lst
		write func(root, hostDir string) string        // the -w value
		want  string
	}{
		{"absolute folder link", func(t *testing.T, root, hostDir string) {
			pygrubMustSymlink(t, hostDir, filepath.Join(root, "boot/grub"))
		}, nil, "does not exist in the guest"},
		{"relative folder link", func(t *testing.T, root, hostDir string) {
			pygrubMustSymlink(t, pygrubRel(t, filepath.Join(root, "boot"), hostDir), filepath.Join(root, "boot/grub"))
		}, nil, "does not exist in the guest"},
		{"absolute file link", func(t *testing.T, root, hostDir string) {
			pygrubMustSymlink(t, filepath.Join(hostDir, "menu.lst"), filepath.Join(root, "boot/grub/menu.lst"))
		}, nil, "a symbolic link"},
		{"relative file link", func(t *testing.T, root, hostDir string) {
			pygrubMustSymlink(t, pygrubRel(t, filepath.Join(root, "boot/grub"), filepath.Join(hostDir, "menu.lst")), filepath.Join(root, "boot/grub/menu.lst"))
		}, nil, "a symbolic link"},
		{"-w outside --root", nil, func(root, hostDir string) string { return filepath.Join(hostDir, "menu.lst") }, "not inside the guest root"},
		{"-w climbing out of --root", func(t *testing.T, root, hostDir string) {
			os.MkdirAll(filepath.Join(root, "boot/grub"), 0o755)
		}, func(root, hostDir string) string {
			// Not filepath.Join, which would clean the ".." away.
			return root + "/boot/grub/" + pygrubRel(t, filepath.Join(root, "boot/grub"), hostDir) + "/menu.lst"
		}, "not inside the guest root"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := pygrubEL7Guest(t)
			hostDir := filepath.Join(filepath.Dir(root), "host/boot/grub")
			pygrubWriteTree(t, hostDir, map[string]string{"menu.lst": hostText})
			if c.setup != nil {
				c.setup(t, root, hostDir)
			}
			target := filepath.Join(root, "boot/grub/menu.lst")
			if c.write != nil {
				target = c.write(root, hostDir)
			}
			args := []string{"pygrub", "menulst", "--root", root, "-w", target}
			_, stderr, code := pygrubRunGuarded(t, "", args...)
			pygrubWantRefusal(t, args, stderr, code, 2, "-w "+target, c.want)
			pygrubFileIs(t, filepath.Join(hostDir, "menu.lst"), hostText)
			if backups, _ := filepath.Glob(filepath.Join(hostDir, "*.orig*")); len(backups) > 0 {
				t.Errorf("backups made on the host: %v", backups)
			}
			for kind, link := range map[string]string{"folder link": "boot/grub", "file link": "boot/grub/menu.lst"} {
				if fi, err := os.Lstat(filepath.Join(root, link)); strings.Contains(c.name, kind) && (err != nil || fi.Mode()&os.ModeSymlink == 0) {
					t.Errorf("the guest's link %s is gone: %v", link, err)
				}
			}
		})
	}

	// A link that stays in the guest is followed there, as pygrub and the
	// guest itself would: /boot/grub -> /grub-legacy writes
	// ROOT/grub-legacy/menu.lst.
	root := pygrubEL7Guest(t)
	if err := os.MkdirAll(filepath.Join(root, "grub-legacy"), 0o755); err != nil {
		t.Fatal(err)
	}
	pygrubMustSymlink(t, "/grub-legacy", filepath.Join(root, "boot/grub"))
	args := []string{"pygrub", "menulst", "--root", root, "-w", filepath.Join(root, "boot/grub/menu.lst")}
	if _, stderr, code := pygrubRunGuarded(t, "", args...); code != 0 {
		t.Fatalf("opsctl %s: exit %d %s", strings.Join(args, " "), code, stderr)
	}
	if data, err := os.ReadFile(filepath.Join(root, "grub-legacy/menu.lst")); err != nil || !strings.Contains(string(data), "title ") {
		t.Errorf("menu.lst through an in-guest link: %v\n%s", err, data)
	}
}

// TestPygrubWriteRefusesWhatIsNotARegularFile: -w onto a device node, a
// FIFO, a folder or a symlink is refused (exit 2) and the thing is left as
// it was; before, a device node was replaced by a regular file.
func TestPygrubWriteRefusesWhatIsNotARegularFile(t *testing.T) {
	testenv.NeedRoot(t) // mknod
	grubCfg := pygrubCorpusFile(t, "centos7.cfg")
	dir := t.TempDir()
	other := filepath.Join(dir, "other.lst")
	os.WriteFile(other, []byte("other\n"), 0o644)
	kinds := []struct {
		name, what string
		make       func(path string) error
		is         func(fi os.FileInfo) bool
	}{
		{"device", "a character device", func(p string) error { return syscall.Mknod(p, syscall.S_IFCHR|0o666, 1<<8|3) }, func(fi os.FileInfo) bool { return fi.Mode()&os.ModeCharDevice != 0 }},
		{"fifo", "a FIFO", func(p string) error { return syscall.Mkfifo(p, 0o644) }, func(fi os.FileInfo) bool { return fi.Mode()&os.ModeNamedPipe != 0 }},
		{"folder", "a folder", func(p string) error { return os.Mkdir(p, 0o755) }, func(fi os.FileInfo) bool { return fi.IsDir() }},
		{"symlink", "a symbolic link", func(p string) error { return os.Symlink(other, p) }, func(fi os.FileInfo) bool { return fi.Mode()&os.ModeSymlink != 0 }},
	}
	for _, k := range kinds {
		for _, form := range []string{"grub-cfg", "root", "kickstart"} {
			t.Run(k.name+"/"+form, func(t *testing.T) {
				var target string
				var args []string
				switch form {
				case "grub-cfg":
					target = filepath.Join(t.TempDir(), "menu.lst")
					args = []string{"pygrub", "menulst", "--grub-cfg", grubCfg, "-w", target}
				case "root":
					root := pygrubEL7Guest(t)
					target = filepath.Join(root, "boot/grub/menu.lst")
					os.MkdirAll(filepath.Dir(target), 0o755)
					args = []string{"pygrub", "menulst", "--root", root, "-w", target}
				case "kickstart":
					target = filepath.Join(t.TempDir(), "post.ks")
					args = []string{"pygrub", "menulst", "--kickstart", "-w", target}
				}
				if err := k.make(target); err != nil {
					t.Fatal(err)
				}
				_, stderr, code := pygrubRunGuarded(t, "", args...)
				pygrubWantRefusal(t, args, stderr, code, 2, "-w "+target, k.what)
				if fi, err := os.Lstat(target); err != nil || !k.is(fi) {
					t.Errorf("%s is no longer %s: %v %v", target, k.what, fi.Mode(), err)
				}
			})
		}
	}
	pygrubFileIs(t, other, "other\n")
}

// TestPygrubWriteRefusesAMissingFolder: a -w whose folder does not exist is
// a usage error; before, the folders were made (mkdir -p).
func TestPygrubWriteRefusesAMissingFolder(t *testing.T) {
	grubCfg := pygrubCorpusFile(t, "centos7.cfg")
	base := t.TempDir()
	root := pygrubEL7Guest(t) // no /boot/grub
	for _, c := range []struct {
		args    []string
		missing string
	}{
		{[]string{"pygrub", "menulst", "--grub-cfg", grubCfg, "-w", filepath.Join(base, "no/such/menu.lst")}, filepath.Join(base, "no")},
		{[]string{"pygrub", "menulst", "--root", root, "-w", filepath.Join(root, "boot/grub/menu.lst")}, filepath.Join(root, "boot/grub")},
		{[]string{"pygrub", "menulst", "--kickstart", "-w", filepath.Join(base, "ks/post.ks")}, filepath.Join(base, "ks")},
	} {
		_, stderr, code := pygrubRunGuarded(t, "", c.args...)
		pygrubWantRefusal(t, c.args, stderr, code, 2, "-w "+c.args[len(c.args)-1], "does not exist")
		if _, err := os.Lstat(c.missing); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was created", c.missing)
		}
	}
}

// TestPygrubMenuLstKeepsAFileItDidNotWrite: -w over a menu.lst opsctl did
// not write keeps it as FILE.orig (FILE.orig.N when that is taken, never
// overwriting a backup); over its own, it writes without a backup.
func TestPygrubMenuLstKeepsAFileItDidNotWrite(t *testing.T) {
	root := pygrubEL7Guest(t)
	target := filepath.Join(root, "boot/grub/menu.lst")
	pygrubWriteTree(t, root, map[string]string{"/boot/grub/menu.lst": "# written by hand\ndefault=0\n"})
	if err := os.Chmod(target, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"pygrub", "menulst", "--root", root, "-w", target}

	out, _, code := pygrubRunGuarded(t, "", append(args, "--dry-run")...)
	if code != 0 || !strings.HasPrefix(out, "# would write "+target+", keeping the file there as "+target+".orig:\n") {
		t.Errorf("--dry-run over a hand-written file: exit %d\n%s", code, out)
	}
	pygrubFileIs(t, target, "# written by hand\ndefault=0\n")

	_, stderr, code := pygrubRunGuarded(t, "", args...)
	if code != 0 || !strings.Contains(stderr, "kept the file that was there as "+target+".orig") {
		t.Fatalf("first write: exit %d %s", code, stderr)
	}
	pygrubFileIs(t, target+".orig", "# written by hand\ndefault=0\n")
	if fi, err := os.Stat(target + ".orig"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v %v, want 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten menu.lst mode %v %v, want the old 0600", fi.Mode(), err)
	}
	written, _ := os.ReadFile(target)

	// opsctl's own file: rewritten, no second backup.
	if _, stderr, code := pygrubRunGuarded(t, "", args...); code != 0 || strings.Contains(stderr, "kept") {
		t.Errorf("second write: exit %d %s", code, stderr)
	}
	if _, err := os.Lstat(target + ".orig.1"); err == nil {
		t.Error("a backup of opsctl's own menu.lst")
	}
	pygrubFileIs(t, target, string(written))

	// Hand-edited again: the first backup stays, the new one is .orig.1.
	os.WriteFile(target, []byte("# edited by hand again\n"), 0o644)
	if _, stderr, code := pygrubRunGuarded(t, "", args...); code != 0 || !strings.Contains(stderr, target+".orig.1") {
		t.Errorf("third write: exit %d %s", code, stderr)
	}
	pygrubFileIs(t, target+".orig", "# written by hand\ndefault=0\n")
	pygrubFileIs(t, target+".orig.1", "# edited by hand again\n")
	if tmp, _ := filepath.Glob(filepath.Join(root, "boot/grub/.*")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// TestPygrubMenuLstDashIsStdout: -w - prints menu.lst; before, it wrote a
// file named "-".
func TestPygrubMenuLstDashIsStdout(t *testing.T) {
	grubCfg := pygrubCorpusFile(t, "centos7.cfg")
	dir := t.TempDir()
	out, stderr, code := pygrubRunGuarded(t, dir, "pygrub", "menulst", "--grub-cfg", grubCfg, "-w", "-")
	if code != 0 || !strings.Contains(out, "\ntitle CentOS Linux (3.10.0-1160.el7.x86_64) 7 (Core)\n") {
		t.Errorf("-w -: exit %d %s\n%s", code, stderr, out)
	}
	if _, err := os.Lstat(filepath.Join(dir, "-")); err == nil {
		t.Error(`-w - wrote a file named "-"`)
	}
	out, _, code = pygrubRunGuarded(t, dir, "pygrub", "menulst", "--kickstart", "-w", "-")
	if code != 0 || !strings.HasPrefix(out, "%post") {
		t.Errorf("--kickstart -w -: exit %d\n%s", code, out)
	}
	if _, err := os.Lstat(filepath.Join(dir, "-")); err == nil {
		t.Error(`--kickstart -w - wrote a file named "-"`)
	}
}

// TestPygrubReadsOnlyRegularFilesOfBoundedSize: /dev/zero, a FIFO without
// a writer and a file just over the limit, as --grub-cfg, check PATH and
// --pygrub: refused at once with one line. Before, /dev/zero was read
// past 2 GB and a FIFO blocked for ever.
func TestPygrubReadsOnlyRegularFilesOfBoundedSize(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "grub.cfg")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	fifoParser := filepath.Join(dir, "lib/GrubConf.py")
	os.MkdirAll(filepath.Dir(fifoParser), 0o755)
	if err := syscall.Mkfifo(fifoParser, 0o644); err != nil {
		t.Fatal(err)
	}
	sparse := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bigCfg := sparse("big.cfg", 64<<20+1)
	bigParser := filepath.Join(dir, "big/GrubConf.py")
	os.MkdirAll(filepath.Dir(bigParser), 0o755)
	os.Rename(sparse("GrubConf.py", 4<<20+1), bigParser)

	// Files found rather than named: a GrubConf.py beside the pygrub
	// script, the grubenv beside --grub-cfg.
	script := filepath.Join(dir, "xen/bin/pygrub")
	pygrubWriteTree(t, dir, map[string]string{"xen/bin/pygrub": "#!/usr/bin/python3\n", "xen/lib/python/grub/.keep": "", "cfg/grub.cfg": pygrubReadCorpus(t, "centos7.cfg")})
	foundParser := filepath.Join(dir, "xen/lib/python/grub/GrubConf.py")
	if err := syscall.Mkfifo(foundParser, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "cfg/grubenv"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := pygrubRunGuarded(t, "", "pygrub", "menulst", "--grub-cfg", filepath.Join(dir, "cfg/grub.cfg"))
	if code != 0 || !strings.Contains(out, "\ndefault=0\n") {
		t.Errorf("menulst --grub-cfg beside a grubenv FIFO: exit %d %s\n%s", code, stderr, out)
	}

	for _, c := range []struct {
		args  []string
		code  int
		wants []string
	}{
		{[]string{"pygrub", "patch", "--check", "--pygrub", script}, 1, []string{foundParser + ": a FIFO, expected a regular file"}},
		{[]string{"pygrub", "menulst", "--grub-cfg", "/dev/zero"}, 2, []string{"--grub-cfg /dev/zero", "a character device"}},
		{[]string{"pygrub", "menulst", "--grub-cfg", fifo}, 2, []string{"--grub-cfg " + fifo, "a FIFO"}},
		{[]string{"pygrub", "check", "/dev/zero"}, 2, []string{"/dev/zero", "a character device"}},
		{[]string{"pygrub", "check", fifo}, 2, []string{fifo, "a FIFO"}},
		{[]string{"pygrub", "patch", "--check", "--pygrub", "/dev/zero"}, 2, []string{"--pygrub /dev/zero", "a character device"}},
		{[]string{"pygrub", "patch", "--check", "--pygrub", fifo}, 2, []string{"--pygrub " + fifo, "a FIFO"}},
		{[]string{"pygrub", "patch", "--check", "--pygrub", fifoParser}, 2, []string{"--pygrub " + fifoParser, "a FIFO"}},
		{[]string{"pygrub", "menulst", "--grub-cfg", bigCfg}, 1, []string{bigCfg, "more than 64 MiB"}},
		{[]string{"pygrub", "check", bigCfg}, 1, []string{bigCfg, "more than 64 MiB"}},
		{[]string{"pygrub", "patch", "--check", "--pygrub", bigParser}, 1, []string{bigParser, "more than 4 MiB"}},
	} {
		_, stderr, code := pygrubRunGuarded(t, "", c.args...)
		pygrubWantRefusal(t, c.args, stderr, code, c.code, c.wants...)
	}
}

// TestPygrubReadsA50MBGrubCfg: the size limit leaves room for the largest
// configs seen (a grub.cfg of 50 MB parsed fine before the limit).
func TestPygrubReadsA50MBGrubCfg(t *testing.T) {
	cfg := pygrubReadCorpus(t, "centos7.cfg")
	pad := strings.Repeat("# a line of a very large grub.cfg, kept to check the size limit\n", (50_000_000-len(cfg))/64+1)
	path := filepath.Join(t.TempDir(), "grub.cfg")
	if err := os.WriteFile(path, []byte(cfg+pad), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() < 50_000_000 {
		t.Fatalf("%d bytes", fi.Size())
	}
	out, stderr, code := pygrubRunGuarded(t, "", "pygrub", "check", path, "-o", "json")
	var rep struct{ Entries []struct{ Title string } }
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || len(rep.Entries) != 2 {
		t.Errorf("check of a 50 MB grub.cfg: exit %d %s %v %+v", code, stderr, err, rep)
	}
	if out, stderr, code := pygrubRunGuarded(t, "", "pygrub", "menulst", "--grub-cfg", path); code != 0 || !strings.Contains(out, "\ntitle CentOS Linux (3.10.0-1160.el7.x86_64) 7 (Core)\n") {
		t.Errorf("menulst of a 50 MB grub.cfg: exit %d %s", code, stderr)
	}
}

// TestPygrubMissingInputsAreUsageErrors: a file or folder named on the
// command line that is missing or of the wrong kind exits 2 with one line
// naming the flag or argument.
func TestPygrubMissingInputsAreUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x\n"), 0o644)
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"pygrub", "check", missing}, []string{missing, "no such file or directory"}},
		{[]string{"pygrub", "menulst", "--grub-cfg", missing}, []string{"--grub-cfg " + missing, "no such file or directory"}},
		{[]string{"pygrub", "menulst", "--grub-cfg", dir}, []string{"--grub-cfg " + dir, "a folder"}},
		{[]string{"pygrub", "menulst", "--root", missing}, []string{"--root " + missing, "no such file or directory"}},
		{[]string{"pygrub", "menulst", "--root", file}, []string{"--root " + file, "expected a folder"}},
		{[]string{"pygrub", "patch", "--check", "--pygrub", missing}, []string{"--pygrub " + missing, "no such file or directory"}},
		{[]string{"pygrub", "patch", "--check", "--pygrub", dir}, []string{"--pygrub " + dir, "a folder"}},
		{[]string{"pygrub", "scan", "--check", "--pygrub", missing, "--connect", "test:///default?socket=" + missing}, []string{"--pygrub " + missing, "no such file or directory"}},
	} {
		_, stderr, code := pygrubRunGuarded(t, "", c.args...)
		pygrubWantRefusal(t, c.args, stderr, code, 2, c.wants...)
	}
}

// TestPygrubCheckEscapesGuestText: titles, kernels and arguments from a
// guest reach the terminal with their control characters escaped (an ESC
// could retitle the window, clear the screen or fake lines); JSON keeps
// them exact.
func TestPygrubCheckEscapesGuestText(t *testing.T) {
	title := "Evil\x1b]0;owned\x07 \x1b[2J\u009b1mtitle"
	cfg := "menuentry '" + title + "' {\n\tlinux /vmlinuz\x1b[31m root=/dev/xvda1\x1b[0m\r\n\tinitrd /initrd\x08\x08\x08\x08\x08\x08\x08/boot/x\n}\n"
	root := t.TempDir()
	pygrubWriteTree(t, root, map[string]string{"/boot/grub/grub.cfg": cfg, "/vmlinuz\x1b[31m": "k", "/initrd\x08\x08\x08\x08\x08\x08\x08/boot/x": "i"})
	for _, target := range []string{root, filepath.Join(root, "boot/grub/grub.cfg")} {
		out, stderr, _ := pygrubRunGuarded(t, "", "pygrub", "check", target)
		if strings.ContainsAny(out, "\x1b\x07\x08\r\u009b") {
			t.Errorf("check %s prints control characters raw:\n%q", target, out)
		}
		for _, want := range []string{`Evil\x1b]0;owned\x07 \x1b[2J\u009b1mtitle`, `kernel /vmlinuz\x1b[31m`} {
			if !strings.Contains(out, want) {
				t.Errorf("check %s: output lacks %s:\n%s%s", target, want, out, stderr)
			}
		}
		out, _, _ = pygrubRunGuarded(t, "", "pygrub", "check", target, "-o", "json")
		var rep struct {
			Entries []struct{ Title, Kernel string }
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Entries) != 1 || rep.Entries[0].Title != title || rep.Entries[0].Kernel != "/vmlinuz\x1b[31m" {
			t.Errorf("check %s -o json: %v %+v", target, err, rep)
		}
	}
}

func TestEscapeControls(t *testing.T) {
	for in, want := range map[string]string{
		"CentOS Linux (3.10.0) 7 (Core)": "CentOS Linux (3.10.0) 7 (Core)",
		"Debian GNU/Linux, é 中文":         "Debian GNU/Linux, é 中文",
		"a\x1b[2Jb\x07c\x00d\x7f":        `a\x1b[2Jb\x07c\x00d\x7f`,
		"tab\there\nline\rret":           `tab\x09here\x0aline\x0dret`,
		"csi\u009b31m":                   `csi\u009b31m`,
		"bidi\u202eevil\u2066x\u2028y":   `bidi\u202eevil\u2066x\u2028y`,
		"bad\xff\xfe utf8":               `bad\xff\xfe utf8`,
		"real \ufffd kept":               "real \ufffd kept",
		`back\slash ["\'](.*?)`:          `back\slash ["\'](.*?)`,
	} {
		if got := escapeControls(in); got != want {
			t.Errorf("escapeControls(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPygrubScanTableEscapesGuestText: scan's table holds what libvirt
// and pygrub's output say about the guests (titles quoted in the detail);
// their control characters are escaped and the columns stay one line.
func TestPygrubScanTableEscapesGuestText(t *testing.T) {
	guests := []pygrubfix.Guest{{
		Domain:     "evil\x1b]0;x\x07",
		Bootloader: "/usr/lib/xen-4.17/bin/pygrub",
		Disks:      []string{"/dev/vg0/evil\r"},
		Check:      &pygrubfix.DiskCheck{Bootable: true, Detail: "/dev/vg0/evil: /boot/grub/grub.cfg, 1 entries, first \"T\x1b[2J\nfake line\" (/vmlinuz)"},
	}}
	var out strings.Builder
	printScanTable(&out, guests, true)
	if strings.ContainsAny(out.String(), "\x1b\x07\r") || strings.Count(out.String(), "\n") != 2 {
		t.Errorf("table:\n%q", out.String())
	}
	for _, want := range []string{`evil\x1b]0;x\x07`, `/dev/vg0/evil\x0d`, `first "T\x1b[2J\x0afake line"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %s:\n%s", want, out.String())
		}
	}
}

// TestPygrubMenuLstExamplesRun runs every `opsctl pygrub menulst` and
// `opsctl pygrub check` example of the help and of docs/pygrub.md as a
// user would: /mnt is a mounted EL7 guest (with the /boot/grub folder the
// page tells to make), the working folder holds a copy of grub.cfg.
func TestPygrubMenuLstExamplesRun(t *testing.T) {
	f := pygrubTestFactory()
	var lines []string
	for _, example := range []string{NewCmdPygrubMenuLst(f, nil).Example, NewCmdPygrubCheck(f, nil).Example} {
		lines = append(lines, strings.Split(example, "\n")...)
	}
	page, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "docs/pygrub.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines = append(lines, strings.Split(string(page), "\n")...)
	ran := 0
	for _, line := range lines {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "# "))
		if !strings.HasPrefix(line, "opsctl pygrub menulst ") && !strings.HasPrefix(line, "opsctl pygrub check ") {
			continue
		}
		var args []string
		for _, word := range strings.Fields(line)[1:] {
			if word == "#" || word == ">>" || word == ">" || word == "|" {
				break
			}
			args = append(args, word)
		}
		guest := filepath.Join(t.TempDir(), "mnt")
		pygrubWriteTree(t, guest, map[string]string{"/boot/grub2/grub.cfg": pygrubReadCorpus(t, "centos7.cfg"), "/boot/grub/.keep": ""})
		if strings.Contains(line, "--install") {
			// The --install examples are for EL8/EL9 guests.
			guest = pygrubBLSTree(t, pygrubBLSPlainCfg)
		}
		work := t.TempDir()
		pygrubWriteTree(t, work, map[string]string{"grub.cfg": pygrubReadCorpus(t, "centos7.cfg")})
		if !strings.Contains(line, "--kickstart") {
			for k, a := range args {
				if a == "/mnt" || strings.HasPrefix(a, "/mnt/") {
					args[k] = guest + strings.TrimPrefix(a, "/mnt")
				}
			}
		}
		_, stderr, code := pygrubRunGuarded(t, work, args...)
		// check exits 1 for a guest without kernel files: the example ran.
		if code != 0 && !(args[1] == "check" && code == 1 && stderr == "") {
			t.Errorf("example %q: exit %d %s", line, code, stderr)
		}
		ran++
	}
	if ran < 6 {
		t.Errorf("ran %d examples; the help and the page have more", ran)
	}
}

// TestPygrubWritesRefuseAUsersLinkOnTheWay: -w's folder, and --root
// itself, were opened following every symbolic link on the way. A user
// who owns a folder on the path pointed a link there at a folder of
// root's: `menulst -w ~user/d/menu.lst` replaced root's menu.lst there,
// and `menulst --root ~user/guest --install` (guest -> a root-owned tree,
// the host's / as well) wrote into root's tree. Such a link is not
// followed now: exit 2, one line, nothing written.
func TestPygrubWritesRefuseAUsersLinkOnTheWay(t *testing.T) {
	testenv.NeedRoot(t)
	const rootText = "# root's own menu.lst\n"
	grubCfg := pygrubCorpusFile(t, "centos7.cfg")
	for _, form := range []string{"-w", "--root --install", "--root -w"} {
		t.Run(form, func(t *testing.T) {
			owned, victim := raceFolders(t)
			rootTree := pygrubEL7Guest(t) // root's, with /boot/grub2/grub.cfg
			pygrubWriteTree(t, rootTree, map[string]string{"boot/grub/menu.lst": rootText})
			var args []string
			var link, want string
			switch form {
			case "-w":
				link = filepath.Join(owned, "d")
				nobodysLink(t, filepath.Join(rootTree, "boot/grub"), link)
				target := filepath.Join(link, "menu.lst")
				args = []string{"pygrub", "menulst", "--grub-cfg", grubCfg, "-w", target}
				want = "-w " + target + ": " + link + " leads through " + link
			default:
				link = filepath.Join(owned, "guest")
				nobodysLink(t, rootTree, link)
				args = []string{"pygrub", "menulst", "--root", link, "--install"}
				if form == "--root -w" {
					args = []string{"pygrub", "menulst", "--root", link, "-w", filepath.Join(link, "boot/grub/menu.lst")}
				}
				want = "--root " + link + ": " + link + " leads through " + link
			}
			_, stderr, code := pygrubRunGuarded(t, "", args...)
			pygrubWantRefusal(t, args, stderr, code, 2, want, "a symbolic link")
			pygrubFileIs(t, filepath.Join(rootTree, "boot/grub/menu.lst"), rootText)
			if names, _ := os.ReadDir(filepath.Join(rootTree, "boot/grub")); len(names) != 1 {
				t.Errorf("root's /boot/grub holds %v, want menu.lst alone", names)
			}
			victimUntouched(t, victim, 1)
		})
	}
}

// TestPygrubBLSEntriesOfAHostileGuestAreBounded: a guest's Boot Loader Spec
// entries were read up to 1 MiB each, 1,000 of them: a guest with 999
// hard links to one 1 MiB entry (1 MiB of its disk) made `pygrub check`
// (root, on the host) take 2.5 GB of memory and 17 s, and a dom0 of 1 or
// 2 GB would run out. An entry is a few lines; one over 64 KiB is now
// refused in one line naming it, before the others are read.
func TestPygrubBLSEntriesOfAHostileGuestAreBounded(t *testing.T) {
	root := filepath.Join(t.TempDir(), "guest")
	pygrubWriteTree(t, root, map[string]string{"/boot/grub2/grub.cfg": "set timeout=5\nload_env\nblscfg\n"})
	entries := filepath.Join(root, "boot/loader/entries")
	if err := os.MkdirAll(entries, 0o755); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big.conf")
	if err := os.WriteFile(big, []byte("title x\nlinux /vmlinuz\noptions "+strings.Repeat("a", 1<<20-40)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 999 {
		if err := os.Link(big, filepath.Join(entries, fmt.Sprintf("e-%03d.conf", i))); err != nil {
			t.Fatal(err)
		}
	}
	// check reports it as a problem of the guest, on stdout.
	pygrubWantBoundedGuest(t, root, ".conf: 1048568 bytes, more than 64 KiB", "the problem naming the entry")
}

// TestPygrubBLSVariablesOfAHostileGuestAreBounded: opsctl expands the
// variables of a guest's grub.cfg and entries as grub does, and a value
// had no bound: 41 lines of grub.cfg (set x="$x$x", 40 times) doubled a
// variable to terabytes (pygrub check and menulst, root on the host, ran
// out of memory), and an options line of $xy, 10,000 times over,
// multiplied a 60 KiB one into a 600 MB menu. A value that grows beyond 64 KiB (a kernel command line
// is a few KiB) is now refused in one line.
func TestPygrubBLSVariablesOfAHostileGuestAreBounded(t *testing.T) {
	doubling := "set x=aaaaaaaaaaaaaaaa\n" + strings.Repeat("set x=\"$x$x\"\n", 40)
	// blscfg drops a variable of one letter at the end of a field: xy.
	long := "set xy=" + strings.Repeat("a", 60<<10) + "\n"
	cases := map[string]struct{ cfg, options string }{
		"doubling in grub.cfg":  {doubling, "$x"},
		"references in options": {long, strings.Repeat("$xy ", 10000)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "guest")
			pygrubWriteTree(t, root, map[string]string{
				"/boot/grub2/grub.cfg":            tc.cfg + "set timeout=5\nload_env\nblscfg\n",
				"/boot/loader/entries/a-1-1.conf": "title a\nlinux /vmlinuz\noptions " + tc.options + "\n",
			})
			pygrubWantBoundedGuest(t, root, "beyond 64 KiB", "the problem")
		})
	}
}

// pygrubWantBoundedGuest runs pygrub check and menulst on the hostile guest
// root with 1 GiB of address space (far more than a boot menu needs):
// check reports want as a problem of the guest (exit 1, stdout, described
// as what), menulst refuses in one line naming it.
func pygrubWantBoundedGuest(t *testing.T, root, want, what string) {
	t.Helper()
	sh := testenv.Need(t, "sh", "dash")
	for _, args := range [][]string{{"pygrub", "check", root}, {"pygrub", "menulst", "--root", root}} {
		cmd := exec.Command(sh, append([]string{"-c", `ulimit -v 1048576 && exec "$0" "$@"`, testenv.Opsctl(t)}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if args[1] == "check" {
			if code != 1 || !strings.Contains(stdout.String(), want) || stderr.Len() != 0 {
				t.Errorf("check: exit %d, stdout %q, stderr %.300q; want exit 1 and %s", code, stdout.String(), stderr.String(), what)
			}
			continue
		}
		pygrubWantRefusal(t, args, stderr.String(), code, 1, want)
	}
}
