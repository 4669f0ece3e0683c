package pygrubfix

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// resolvers are the two ways a guest path is resolved: openat2 with
// RESOLVE_IN_ROOT, and the walk used on kernels without it. Every test of
// guest paths runs with both.
var resolvers = []struct {
	name      string
	noOpenat2 bool
}{{"openat2", false}, {"walk", true}}

func openTestGuest(t *testing.T, root string, noOpenat2 bool) *guestRoot {
	t.Helper()
	g, err := openGuestRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	g.noOpenat2 = noOpenat2
	t.Cleanup(func() { g.Close() })
	return g
}

// guestBesideHost makes a guest tree at DIR/root and, beside it, a host
// folder DIR/host holding a file "secret": a symlink of the guest that
// escaped would find it at ../host from the root.
func guestBesideHost(t testing.TB, files map[string]string) (root, host string) {
	t.Helper()
	root = guestTree(t, files)
	host = filepath.Join(filepath.Dir(root), "host")
	if err := os.MkdirAll(filepath.Join(host, "boot/grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(host, "secret"), []byte("the host's\n"), 0o600)
	os.WriteFile(filepath.Join(host, "boot/grub/menu.lst"), []byte("the host's menu\n"), 0o644)
	return root, host
}

func symlinks(t testing.TB, root string, links map[string]string) {
	t.Helper()
	for link, target := range links {
		p := filepath.Join(root, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGuestPathsStayInTheGuest: symlinks (absolute, relative, through
// "..") and ".." at the top are resolved inside the guest, never on the
// host; the host's file of the same name is never read.
func TestGuestPathsStayInTheGuest(t *testing.T) {
	root, host := guestBesideHost(t, map[string]string{
		"/host/secret":         "the guest's\n",
		"/boot/grub2/grub.cfg": "grub.cfg\n",
		"/deep/c/.keep":        "",
	})
	symlinks(t, root, map[string]string{
		"/abs":                host,      // the host folder, by its absolute path
		"/rel":                "../host", // the host folder, seen from the root on the host
		"/boot/grub/grub.cfg": "../grub2/grub.cfg",
		"/etc/grub2.cfg":      "/boot/grub2/grub.cfg",
		"/loop":               "/loop",
		"/deep/a":             "../deep/b",
		"/deep/b":             "/deep/c/../../../host",
	})
	for _, r := range resolvers {
		t.Run(r.name, func(t *testing.T) {
			g := openTestGuest(t, root, r.noOpenat2)
			for p, want := range map[string]string{
				"/host/secret":           "the guest's\n",
				"/abs/secret":            "", // no such folder in the guest
				"/rel/secret":            "the guest's\n",
				"/../host/secret":        "the guest's\n",
				"host/../../host/secret": "the guest's\n",
				"/deep/a/secret":         "the guest's\n",
				"/boot/grub/grub.cfg":    "grub.cfg\n",
				"/etc/grub2.cfg":         "grub.cfg\n",
			} {
				data, err := g.readFile(p)
				if want == "" {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s: %q, %v; want no such file", p, data, err)
					}
					continue
				}
				if err != nil || string(data) != want {
					t.Errorf("%s: %q, %v; want %q", p, data, err, want)
				}
			}
			if _, err := g.readFile("/loop"); !errors.Is(err, unix.ELOOP) {
				t.Errorf("/loop: %v, want too many levels of symbolic links", err)
			}
			if _, err := g.readFile("/host/secret/x"); !errors.Is(err, unix.ENOTDIR) {
				t.Errorf("/host/secret/x: %v, want not a directory", err)
			}
			if got := g.realDir("/boot/grub/grub.cfg"); got != "/boot/grub2" {
				t.Errorf("realDir(/boot/grub/grub.cfg) = %s, want /boot/grub2", got)
			}
			if got := g.realDir("/rel/secret"); got != "/host" {
				t.Errorf("realDir(/rel/secret) = %s, want /host", got)
			}
		})
	}
}

// TestGuestReadsRefuseDevicesAndFIFOs: a guest config that is a device
// node (mknod in the guest's /dev, or a link to /dev/zero that lands
// there) or a FIFO is refused without being opened.
func TestGuestReadsRefuseDevicesAndFIFOs(t *testing.T) {
	root := guestTree(t, map[string]string{
		"/boot/grub/grub.cfg": "->/dev/zero",
		"/grub/grub.cfg":      "->../dev/fifo",
		"/dev/fifo":           guestFIFO,
	})
	zero := "/dev/zero"
	if os.Geteuid() == 0 {
		if err := syscall.Mknod(filepath.Join(root, "dev/zero"), syscall.S_IFCHR|0o666, 1<<8|5); err != nil {
			t.Fatal(err)
		}
	} else {
		// Without root the guest has no device node: the link must not
		// reach the host's /dev/zero either.
		zero = ""
	}
	for _, r := range resolvers {
		t.Run(r.name, func(t *testing.T) {
			g := openTestGuest(t, root, r.noOpenat2)
			_, err := g.readFile("/boot/grub/grub.cfg")
			if zero != "" && (err == nil || !strings.Contains(err.Error(), "a character device, expected a regular file")) {
				t.Errorf("device: %v", err)
			}
			if zero == "" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("link to /dev/zero without a guest /dev/zero: %v", err)
			}
			if _, err := g.readFile("/grub/grub.cfg"); err == nil || !strings.Contains(err.Error(), "a FIFO, expected a regular file") {
				t.Errorf("FIFO: %v", err)
			}
		})
	}
}

// TestGuestWritesStayInTheGuest: a write's folder is resolved inside the
// guest; a folder link to the host leads to a folder the guest does not
// have (refused), a file link is refused, a link inside the guest is
// followed.
func TestGuestWritesStayInTheGuest(t *testing.T) {
	for _, r := range resolvers {
		t.Run(r.name, func(t *testing.T) {
			for _, c := range []struct {
				name  string
				files map[string]string
				links func(host string) map[string]string
				want  string // in the error; "" for a write into /grub-legacy
			}{
				{"absolute folder link", nil, func(host string) map[string]string {
					return map[string]string{"/boot/grub": filepath.Join(host, "boot/grub")}
				}, "does not exist in the guest"},
				{"relative folder link", nil, func(host string) map[string]string {
					return map[string]string{"/boot/grub": "../../host/boot/grub"}
				}, "does not exist in the guest"},
				{"absolute file link", map[string]string{"/boot/grub/.keep": ""}, func(host string) map[string]string {
					return map[string]string{"/boot/grub/menu.lst": filepath.Join(host, "boot/grub/menu.lst")}
				}, "a symbolic link, expected a regular file or no file"},
				{"relative file link", map[string]string{"/boot/grub/.keep": ""}, func(host string) map[string]string {
					return map[string]string{"/boot/grub/menu.lst": "../../../host/boot/grub/menu.lst"}
				}, "a symbolic link, expected a regular file or no file"},
				{"folder is a file", map[string]string{"/boot/grub": "a file"}, nil, "/boot/grub is a regular file in the guest"},
				{"link inside the guest", map[string]string{"/grub-legacy/.keep": ""}, func(host string) map[string]string {
					return map[string]string{"/boot/grub": "/grub-legacy"}
				}, ""},
			} {
				root, host := guestBesideHost(t, c.files)
				if c.links != nil {
					symlinks(t, root, c.links(host))
				}
				g := openTestGuest(t, root, r.noOpenat2)
				w, err := g.planWrite("/boot/grub/menu.lst", filepath.Join(root, "boot/grub/menu.lst"))
				if c.want == "" {
					if err != nil {
						t.Fatalf("%s: %v", c.name, err)
					}
					if _, err := w.Apply([]byte("guest\n")); err != nil {
						t.Fatal(err)
					}
					w.Close()
					if data, err := os.ReadFile(filepath.Join(root, "grub-legacy/menu.lst")); err != nil || string(data) != "guest\n" {
						t.Errorf("%s: %q %v", c.name, data, err)
					}
				} else {
					var in *InputError
					if err == nil || !errors.As(err, &in) || !strings.Contains(err.Error(), c.want) {
						t.Errorf("%s: %v; want an InputError saying %q", c.name, err, c.want)
					}
					if err == nil {
						w.Close()
					}
				}
				if data, _ := os.ReadFile(filepath.Join(host, "boot/grub/menu.lst")); string(data) != "the host's menu\n" {
					t.Errorf("%s: the host's menu.lst was written: %q", c.name, data)
				}
				if names, _ := filepath.Glob(filepath.Join(host, "boot/grub/*")); len(names) != 1 {
					t.Errorf("%s: files made on the host: %v", c.name, names)
				}
			}
		})
	}
}

// renameModes are the two ways a file is put in place: renameat2 (with
// RENAME_NOREPLACE or RENAME_EXCHANGE) and, for kernels before 3.15, a
// check followed by renameat.
var renameModes = []struct {
	name        string
	noRenameat2 bool
}{{"renameat2", false}, {"renameat", true}}

func planHostWriteForTest(t *testing.T, file string, noRenameat2 bool) *FileWrite {
	t.Helper()
	w, err := PlanMenuLstWrite("", file)
	if err != nil {
		t.Fatal(err)
	}
	w.noRenameat2 = noRenameat2
	t.Cleanup(func() { w.Close() })
	return w
}

// TestFileWriteRefusesAFileSwappedSincePlanned: when the file read (or
// the free name) is replaced by something else between the plan and the
// write, nothing is written, the thing is left there, and neither backup
// nor temporary file is left behind.
func TestFileWriteRefusesAFileSwappedSincePlanned(t *testing.T) {
	for _, m := range renameModes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "menu.lst")
			os.WriteFile(file, []byte("by hand\n"), 0o644)
			w := planHostWriteForTest(t, file, m.noRenameat2)
			if w.Backup != file+".orig" {
				t.Fatalf("backup %q", w.Backup)
			}
			fifo := filepath.Join(dir, "fifo")
			if err := syscall.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(fifo, file); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Apply([]byte("new\n")); err == nil || !strings.Contains(err.Error(), "replaced (now a FIFO) since it was read") {
				t.Errorf("Apply over a swapped-in FIFO: %v", err)
			}
			if fi, err := os.Lstat(file); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
				t.Errorf("the FIFO was replaced: %v %v", fi.Mode(), err)
			}
			if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 1 {
				t.Errorf("left behind: %v", names)
			}
			if names, _ := filepath.Glob(filepath.Join(dir, ".*")); len(names) != 0 {
				t.Errorf("left behind: %v", names)
			}

			// A name that was free at the plan and is taken at the write.
			fresh := filepath.Join(dir, "fresh.lst")
			w = planHostWriteForTest(t, fresh, m.noRenameat2)
			if err := os.Symlink("/etc/passwd", fresh); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Apply([]byte("new\n")); err == nil || !strings.Contains(err.Error(), "appeared while it was written") {
				t.Errorf("Apply over a name taken since: %v", err)
			}
			if target, err := os.Readlink(fresh); err != nil || target != "/etc/passwd" {
				t.Errorf("the symlink was replaced: %q %v", target, err)
			}
		})
	}
}

// TestFileWriteKeepsTheFileItReplaces: a new file gets 0644; an existing
// one keeps its mode and owner; the backup is the original itself (same
// inode, times kept), and an existing backup, even a symlink planted at
// FILE.orig, is never replaced or followed.
func TestFileWriteKeepsTheFileItReplaces(t *testing.T) {
	for _, m := range renameModes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "menu.lst")
			w := planHostWriteForTest(t, file, m.noRenameat2)
			if w.Exists() || w.Backup != "" {
				t.Fatalf("plan of a new file: exists %v, backup %q", w.Exists(), w.Backup)
			}
			if backup, err := w.Apply([]byte(menuLstMarker + "\nnew\n")); err != nil || backup != "" {
				t.Fatalf("new file: %q %v", backup, err)
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("new file mode %v %v", fi.Mode(), err)
			}
			// opsctl's own file: no backup.
			w = planHostWriteForTest(t, file, m.noRenameat2)
			if backup, err := w.Apply([]byte(menuLstMarker + "\nagain\n")); err != nil || backup != "" {
				t.Errorf("over opsctl's file: backup %q %v", backup, err)
			}

			os.WriteFile(file, []byte("by hand\n"), 0o640)
			os.Chmod(file, 0o640)
			os.Chown(file, 1, 2) // as root; a no-op otherwise
			var before unix.Stat_t
			unix.Lstat(file, &before)
			elsewhere := filepath.Join(t.TempDir(), "elsewhere")
			os.WriteFile(elsewhere, []byte("elsewhere\n"), 0o644)
			if err := os.Symlink(elsewhere, file+".orig"); err != nil {
				t.Fatal(err)
			}
			w = planHostWriteForTest(t, file, m.noRenameat2)
			if w.Backup != file+".orig.1" {
				t.Errorf("planned backup %q, want .orig.1 (.orig is taken)", w.Backup)
			}
			backup, err := w.Apply([]byte("new\n"))
			if err != nil || backup != file+".orig.1" {
				t.Fatalf("backup %q %v", backup, err)
			}
			var kept, now unix.Stat_t
			unix.Lstat(backup, &kept)
			unix.Lstat(file, &now)
			if kept.Ino != before.Ino || kept.Mtim != before.Mtim {
				t.Errorf("the backup is not the original file: inode %d (was %d)", kept.Ino, before.Ino)
			}
			if now.Mode&0o7777 != 0o640 || now.Uid != before.Uid || now.Gid != before.Gid {
				t.Errorf("new file mode %o owner %d:%d, want 640 %d:%d", now.Mode&0o7777, now.Uid, now.Gid, before.Uid, before.Gid)
			}
			if data, _ := os.ReadFile(elsewhere); string(data) != "elsewhere\n" {
				t.Errorf("the planted backup link was followed: %q", data)
			}
			if target, _ := os.Readlink(file + ".orig"); target != elsewhere {
				t.Errorf("the planted backup link was replaced")
			}
			if data, _ := os.ReadFile(file); string(data) != "new\n" {
				t.Errorf("file holds %q", data)
			}
		})
	}
}

// TestReadHostFileLimits: a regular file is read up to its limit; one byte
// more is refused (or cut, for pygrub's FS_READ_MAX).
func TestReadHostFileLimits(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, []byte("0123456789"), 0o644)
	if data, err := readHostFile(file, 10, false); err != nil || string(data) != "0123456789" {
		t.Errorf("at the limit: %q %v", data, err)
	}
	if _, err := readHostFile(file, 9, false); err == nil || !strings.Contains(err.Error(), "10 bytes, more than") {
		t.Errorf("over the limit: %v", err)
	}
	if data, err := readHostFile(file, 4, true); err != nil || string(data) != "0123" {
		t.Errorf("cut: %q %v", data, err)
	}
	if _, err := readHostFile("/dev/zero", 4, true); err == nil || !strings.Contains(err.Error(), "a character device") {
		t.Errorf("/dev/zero: %v", err)
	}
}

// TestPatchApplyRefusesAParserSwappedSincePlanned: a GrubConf.py replaced
// by a FIFO between the plan and the write is refused at once (before, the
// FIFO was opened for reading and blocked for ever) and left as it is.
func TestPatchApplyRefusesAParserSwappedSincePlanned(t *testing.T) {
	dir := t.TempDir()
	script := regexScript(t, dir, "pygrub", greedyTitle)
	plan, err := PlanPatch([]string{script})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plan.Close() })
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, script); err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Apply(); err == nil || !strings.Contains(err.Error(), "replaced (now a FIFO) since it was read") {
		t.Errorf("Apply: %v", err)
	}
	if fi, err := os.Lstat(script); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v", err)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 1 {
		t.Errorf("left behind: %v", names)
	}
}

// FuzzGuestPathResolution holds the walk (kernels without openat2) to
// openat2's RESOLVE_IN_ROOT: for any path, in a guest full of symlinks
// that try to leave it, both find the same file or fail alike.
func FuzzGuestPathResolution(f *testing.F) {
	root, host := guestBesideHost(f, map[string]string{
		"/host/secret":         "the guest's\n",
		"/boot/grub2/grub.cfg": "grub.cfg\n",
		"/deep/c/.keep":        "",
		"/file":                "a file\n",
	})
	symlinks(f, root, map[string]string{
		"/abs":                host,
		"/rel":                "../host",
		"/boot/grub/grub.cfg": "../grub2/grub.cfg",
		"/etc/grub2.cfg":      "/boot/grub2/grub.cfg",
		"/loop":               "/loop",
		"/loop2":              "loop3",
		"/loop3":              "/deep/../loop2",
		"/deep/a":             "../deep/b",
		"/deep/b":             "/deep/c/../../../host",
		"/deep/up":            "../../../..",
		"/deep/slash":         "/",
		"/deep/dot":           ".",
		"/deep/empty-ish":     "./",
		"/deep/tofile":        "/file/",
		"/dangling":           "/nowhere/at/all",
	})
	for _, seed := range []string{
		"/host/secret", "/abs/secret", "/rel/secret", "/../host/secret", "deep/a/secret",
		"/boot/grub/grub.cfg", "/etc/grub2.cfg", "/loop", "/loop2", "/deep/up/deep/up/host",
		"/deep/slash/..", "/deep/dot/a/", "/deep/tofile", "/file/", "/file/..", "/dangling",
		"", "/", ".", "..", "//host//secret/", "deep/empty-ish/c/.keep",
	} {
		f.Add(seed)
	}
	newGuest := func(t testing.TB, noOpenat2 bool) *guestRoot {
		g, err := openGuestRoot(root)
		if err != nil {
			t.Fatal(err)
		}
		g.noOpenat2 = noOpenat2
		return g
	}
	kernel := newGuest(f, false)
	if _, err := kernel.open("/"); errors.Is(err, unix.ENOSYS) {
		f.Skip("no openat2 on this kernel: nothing to compare the walk with")
	}
	kernel.Close()
	f.Fuzz(func(t *testing.T, p string) {
		if len(p) >= unix.PathMax {
			t.Skip("the kernel refuses paths of PATH_MAX and more; the walk has no such limit")
		}
		results := make([]struct {
			st  unix.Stat_t
			err error
		}, 2)
		for i, noOpenat2 := range []bool{false, true} {
			g := newGuest(t, noOpenat2)
			file, err := g.open(p)
			if err == nil {
				results[i].st, err = fstat(file)
				file.Close()
			}
			results[i].err = errors.Unwrap(err)
			g.Close()
		}
		k, w := results[0], results[1]
		if (k.err == nil) != (w.err == nil) || k.err != nil && k.err.Error() != w.err.Error() {
			t.Fatalf("%q: openat2: %v; walk: %v", p, k.err, w.err)
		}
		if k.err == nil && (k.st.Dev != w.st.Dev || k.st.Ino != w.st.Ino) {
			t.Fatalf("%q: openat2 and the walk found different files", p)
		}
		if k.err == nil {
			// Whatever was found is inside the guest.
			var rootSt unix.Stat_t
			unix.Stat(host, &rootSt)
			if k.st.Ino == rootSt.Ino && k.st.Dev == rootSt.Dev {
				t.Fatalf("%q: reached the host folder", p)
			}
		}
	})
}
