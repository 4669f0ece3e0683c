package sockfile

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/testenv"
)

// noPrivateLeft fails the test when a private folder is left in dir.
func noPrivateLeft(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".opsctl-") {
			t.Errorf("private folder %s left behind", e.Name())
		}
	}
}

func openDir(t *testing.T, path string) *Dir {
	t.Helper()
	d, err := OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func idOf(t *testing.T, path string) ID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return ID{Dev: st.Dev, Ino: st.Ino}
}

// serve listens at path as a server would, until the test ends; the file
// stays when it is closed (a crashed server).
func serve(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(path string) error {
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
	}
	return err
}

// TestBindGivesTheExactModeAndOwner: bind(2) applies the umask (0660
// under umask 022 came out 0640); the file must end with the mode asked
// for, and the owner, before it appears at its name.
func TestBindGivesTheExactModeAndOwner(t *testing.T) {
	testenv.NeedRoot(t)
	old := unix.Umask(0o027)
	defer unix.Umask(old)
	for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_SEQPACKET, unix.SOCK_DGRAM} {
		dir := t.TempDir()
		d := openDir(t, dir)
		sock, err := d.Bind("s.sock", Options{Type: typ, Mode: 0o666, Owner: &Owner{UID: 1234, GID: 1235}})
		if err != nil {
			t.Fatal(err)
		}
		sock.File.Close()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, "s.sock"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != unix.S_IFSOCK|0o666 || st.Uid != 1234 || st.Gid != 1235 {
			t.Errorf("type %d: mode %o owner %d:%d, want socket 0666 1234:1235", typ, st.Mode, st.Uid, st.Gid)
		}
		if (ID{Dev: st.Dev, Ino: st.Ino}) != sock.Info.ID {
			t.Errorf("type %d: Info describes another file", typ)
		}
		noPrivateLeft(t, dir)
	}
}

// TestBindOwnerFailedDecides: without the right to give the owner (not
// root), Bind fails unless OwnerFailed accepts that. Root may give any
// owner, so the test runs itself again as nobody.
func TestBindOwnerFailedDecides(t *testing.T) {
	if os.Getenv("SOCKFILE_TEST_AS_NOBODY") == "" {
		testenv.NeedRoot(t)
		runAsNobody(t, "^TestBindOwnerFailedDecides$")
		return
	}
	dir := t.TempDir()
	d := openDir(t, dir)
	other := &Owner{UID: 1234, GID: 1235}
	if _, err := d.Bind("a.sock", Options{Mode: 0o600, Owner: other}); err == nil || !strings.Contains(err.Error(), "owner 1234:1235") {
		t.Errorf("Bind with an owner it cannot give: %v, want an error naming the owner", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "a.sock")); !os.IsNotExist(err) {
		t.Errorf("a socket was put in place although its owner could not be given")
	}
	var told error
	sock, err := d.Bind("b.sock", Options{Mode: 0o640, Owner: other, OwnerFailed: func(err error) error { told = err; return nil }})
	if err != nil || told == nil {
		t.Fatalf("Bind with OwnerFailed accepting: %v, told %v", err, told)
	}
	sock.File.Close()
	var st unix.Stat_t
	if unix.Lstat(filepath.Join(dir, "b.sock"), &st); st.Mode&0o777 != 0o640 || int(st.Uid) != os.Getuid() {
		t.Errorf("mode %o owner %d, want 0640 and this process's uid", st.Mode&0o777, st.Uid)
	}
	noPrivateLeft(t, dir)
}

// runAsNobody runs the tests matching run in a copy of this test binary
// as uid and gid 65534, and fails when they fail.
func runAsNobody(t *testing.T, run string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o755)
	}
	bin := filepath.Join(dir, "sockfile.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run="+run, "-test.count=1")
	cmd.Env = append(os.Environ(), "SOCKFILE_TEST_AS_NOBODY=1", "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

// TestBindReachesAnyPathLength: the socket is bound through the folder's
// descriptor, so its address stays short however long the folder's path;
// CheckPath says which paths clients can still connect to.
func TestBindReachesAnyPathLength(t *testing.T) {
	base, err := os.MkdirTemp("/tmp", "sockfile-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	dir := filepath.Join(base, strings.Repeat("d", 200))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strings.Repeat("n", 100))
	d := openDir(t, dir)
	sock, err := d.Bind(filepath.Base(path), Options{Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := sock.Listener()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if served, err := Served(path, unix.SOCK_STREAM); err != nil || !served {
		t.Errorf("a socket at a %d-byte path: served %v, %v", len(path), served, err)
	}
	if err := CheckPath(path); !errors.Is(err, ErrTooLong) {
		t.Errorf("CheckPath of %d bytes: %v", len(path), err)
	}
	if err := CheckPath(strings.Repeat("x", MaxPath)); err != nil {
		t.Errorf("CheckPath of %d bytes: %v", MaxPath, err)
	}
}

// TestBindReplacesNothingButAStaleSocket: whatever else is at the name
// stays as it was.
func TestBindReplacesNothingButAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir)
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	os.Symlink(victim, filepath.Join(dir, "link"))
	os.Mkdir(filepath.Join(dir, "folder"), 0o755)
	serve(t, filepath.Join(dir, "live.sock"))
	serve(t, filepath.Join(dir, "dead.sock")).Close()
	cases := []struct {
		name         string
		replaceStale bool
		want         error
	}{
		{"victim", true, ErrNotSocket},
		{"link", true, ErrNotSocket},
		{"folder", true, ErrNotSocket},
		{"live.sock", true, ErrInUse},
		{"dead.sock", false, ErrExists},
	}
	for _, tc := range cases {
		before := idOf(t, filepath.Join(dir, tc.name))
		_, err := d.Bind(tc.name, Options{Mode: 0o600, ReplaceStale: tc.replaceStale})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if idOf(t, filepath.Join(dir, tc.name)) != before {
			t.Errorf("%s was replaced", tc.name)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("victim changed: %q", b)
	}
	dead := idOf(t, filepath.Join(dir, "dead.sock"))
	sock, err := d.Bind("dead.sock", Options{Mode: 0o600, ReplaceStale: true})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	sock.File.Close()
	if idOf(t, filepath.Join(dir, "dead.sock")) == dead {
		t.Errorf("stale socket still there")
	}
	noPrivateLeft(t, dir)
}

// TestSwapAndPutBack: the swap of `sock capture --swap` and its undoing,
// each step atomic, and refused when a name changed meanwhile.
func TestSwapAndPutBack(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir)
	app := filepath.Join(dir, "app.sock")
	serve(t, app)
	orig := idOf(t, app)
	if err := d.Link("app.sock", "app.sock.orig", orig); err != nil {
		t.Fatal(err)
	}
	if err := d.Link("app.sock", "app.sock.orig", orig); !errors.Is(err, os.ErrExist) {
		t.Errorf("a second Link over an existing name: %v, want it to exist", err)
	}
	// Replace names another file: refused, nothing changes.
	if _, err := d.Bind("app.sock", Options{Mode: 0o600, Replace: &ID{Dev: orig.Dev, Ino: orig.Ino + 1}}); !errors.Is(err, ErrChanged) {
		t.Errorf("Replace of a file that is not there: %v", err)
	}
	if idOf(t, app) != orig {
		t.Fatalf("app.sock changed by a refused Replace")
	}
	sock, err := d.Bind("app.sock", Options{Mode: 0o640, Replace: &orig})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := sock.Listener()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	proxy := sock.Info.ID
	if idOf(t, app) != proxy || idOf(t, app+".orig") != orig {
		t.Fatalf("after the swap: app.sock is not the proxy or the original is not aside")
	}
	if err := d.PutBack("app.sock.orig", proxy, "app.sock", proxy); err == nil || errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "app.sock.orig was removed or replaced") {
		t.Errorf("PutBack of a file that is not the original: %v, want an error naming it", err)
	}
	if idOf(t, app) != proxy || idOf(t, app+".orig") != orig {
		t.Fatalf("a refused PutBack moved something")
	}
	if err := d.PutBack("app.sock.orig", orig, "app.sock", proxy); err != nil {
		t.Fatal(err)
	}
	if idOf(t, app) != orig {
		t.Errorf("the original is not back")
	}
	if _, err := os.Lstat(app + ".orig"); !os.IsNotExist(err) {
		t.Errorf("the aside name is left: %v", err)
	}
	if err := dial(app); err != nil {
		t.Errorf("the server is not reachable after PutBack: %v", err)
	}
	noPrivateLeft(t, dir)
}

// TestPutBackKeepsASocketTheServerMadeMeanwhile: a server restarted
// during a capture made a new socket at the name: it stays, and the old
// one stays aside.
func TestPutBackKeepsASocketTheServerMadeMeanwhile(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir)
	app := filepath.Join(dir, "app.sock")
	serve(t, app)
	orig := idOf(t, app)
	d.Link("app.sock", "aside", orig)
	sock, err := d.Bind("app.sock", Options{Mode: 0o600, Replace: &orig})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.File.Close() // open, as the proxy's listener is
	os.Remove(app)
	serve(t, app)
	restarted := idOf(t, app)
	if err := d.PutBack("aside", orig, "app.sock", sock.Info.ID); !errors.Is(err, ErrChanged) {
		t.Errorf("PutBack over the restarted server's socket: %v, want ErrChanged", err)
	}
	if idOf(t, app) != restarted || idOf(t, filepath.Join(dir, "aside")) != orig {
		t.Errorf("PutBack moved a file although the name had changed")
	}
	noPrivateLeft(t, dir)
}

// TestRemoveIfRemovesOnlyThatFile.
func TestRemoveIfRemovesOnlyThatFile(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir)
	path := filepath.Join(dir, "f")
	os.WriteFile(path, nil, 0o600)
	// Held open, as RemoveIf's callers do: a freed inode number is
	// reused by the next file.
	firstFile, _ := os.Open(path)
	defer firstFile.Close()
	first := idOf(t, path)
	os.Remove(path)
	os.WriteFile(path, []byte("another"), 0o600)
	if removed, err := d.RemoveIf("f", first); removed || err != nil {
		t.Errorf("RemoveIf of a file replaced since: removed %v, %v", removed, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "another" {
		t.Errorf("the other file is gone or changed")
	}
	if removed, err := d.RemoveIf("f", idOf(t, path)); !removed || err != nil {
		t.Errorf("RemoveIf of the file: removed %v, %v", removed, err)
	}
	if removed, err := d.RemoveIf("f", first); removed || err != nil {
		t.Errorf("RemoveIf of nothing: removed %v, %v", removed, err)
	}
	noPrivateLeft(t, dir)
}

// TestListenerCloseRemovesOnlyItsOwnFile: a daemon started after this one
// took over the path; closing the old listener must not remove its socket.
func TestListenerCloseRemovesOnlyItsOwnFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.sock")
	ln, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr().String() != path {
		t.Errorf("Addr %q, want %q", ln.Addr(), path)
	}
	var st syscall.Stat_t
	if syscall.Lstat(path, &st); st.Mode&0o777 != 0o660 {
		t.Errorf("mode %o, want 0660", st.Mode&0o777)
	}
	ln.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}

	ln, err = Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	serve(t, path)
	newer := idOf(t, path)
	ln.Close()
	if _, err := os.Lstat(path); err != nil || idOf(t, path) != newer {
		t.Errorf("Close removed another daemon's socket: %v", err)
	}
	noPrivateLeft(t, dir)
}

// TestOpenDirFollowsOnlyLinksNobodyElseCanChange: opsctl (root) opens the
// folder a file or socket goes into; a user who owns a folder on the way
// could point a link there at /etc or /root. A link is followed when the
// folder holding it is root's (or opsctl's user's) alone, or sticky with a
// link of theirs (/tmp); any other link is refused, naming it.
func TestOpenDirFollowsOnlyLinksNobodyElseCanChange(t *testing.T) {
	testenv.NeedRoot(t)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		os.Chmod(d, 0o755)
	}
	mk := func(path string, mode os.FileMode, uid int) string {
		if err := os.Mkdir(path, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode)
		os.Chown(path, uid, uid)
		return path
	}
	link := func(target, path string, uid int) string {
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		os.Lchown(path, uid, uid)
		return path
	}
	target := mk(filepath.Join(base, "target"), 0o700, 0)
	rootOnly := mk(filepath.Join(base, "root"), 0o755, 0)
	users := mk(filepath.Join(base, "users"), 0o755, 65534)
	sticky := mk(filepath.Join(base, "sticky"), os.ModeSticky|0o777, 0)
	shared := mk(filepath.Join(base, "shared"), 0o775, 0)
	os.Chown(shared, 0, 100) // a group of users may write there
	cases := []struct {
		path   string
		follow bool
	}{
		{link(target, filepath.Join(rootOnly, "abs"), 0), true},
		{link("../target", filepath.Join(rootOnly, "rel"), 0), true},
		{link(target, filepath.Join(sticky, "roots"), 0), true},
		{link(target, filepath.Join(users, "theirs"), 65534), false},
		{link(target, filepath.Join(users, "roots-in-theirs"), 0), false},
		{link(target, filepath.Join(sticky, "theirs"), 65534), false},
		{link(target, filepath.Join(shared, "roots"), 0), false},
		// a root link that leads into a user's link
		{link(filepath.Join(users, "theirs"), filepath.Join(rootOnly, "chain"), 0), false},
	}
	for _, tc := range cases {
		for _, path := range []string{tc.path, tc.path + "/", filepath.Join(tc.path, ".")} {
			d, err := OpenDir(path)
			if tc.follow {
				if err != nil {
					t.Errorf("%s: %v; want %s", path, err, target)
					continue
				}
				var st unix.Stat_t
				unix.Fstat(d.fd, &st)
				if (ID{st.Dev, st.Ino}) != idOf(t, target) {
					t.Errorf("%s led elsewhere than to %s", path, target)
				}
				d.Close()
				continue
			}
			var folderErr *FolderError
			if err == nil || !errors.As(err, &folderErr) || !errors.Is(err, ErrNoFolder) || !strings.Contains(err.Error(), "a symbolic link (to ") {
				t.Errorf("%s: %v; want a FolderError naming the link", path, err)
			}
			if d != nil {
				d.Close()
			}
		}
	}
	// The last component with OpenDirNoFollow: refused whoever owns it.
	if d, err := OpenDirNoFollow(filepath.Join(rootOnly, "abs")); err == nil || !strings.Contains(err.Error(), "not followed: name the folder itself") {
		t.Errorf("OpenDirNoFollow of a link: %v", err)
		if d != nil {
			d.Close()
		}
	}
	loop := link("loop", filepath.Join(rootOnly, "loop"), 0)
	if _, err := OpenDir(loop); err == nil || !errors.Is(err, ErrNoFolder) {
		t.Errorf("a link to itself: %v", err)
	}
}

// FuzzOpenDirWalksAsTheKernel: where every link is root's, in folders of
// root's alone, OpenDir's walk one component at a time must end in the
// folder the kernel's own lookup finds, and fail where it fails: "..",
// ".", absolute and relative links, links to links, trailing slashes.
func FuzzOpenDirWalksAsTheKernel(f *testing.F) {
	base := f.TempDir()
	tree := filepath.Join(base, "t")
	for _, d := range []string{"t/a/b/c", "t/x/y"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(tree, "a", "file"), nil, 0o644)
	for link, target := range map[string]string{
		"t/a/up": "..", "t/a/b/toy": "../../x/y", "t/x/abs": filepath.Join(tree, "a", "b"),
		"t/x/y/loop": "loop", "t/x/chain": "abs/c", "t/a/tofile": "file", "t/a/dangling": "none",
	} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			f.Fatal(err)
		}
	}
	for _, seed := range []string{"t", "t/a/up/x/abs/c", "t/a/b/toy/../..", "t/x/chain/", "t/x/y/loop", "t/a/tofile", "t/a/dangling", "t/a//b/./c/..", "t/a/file/x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		if rel == "" || strings.IndexByte(rel, 0) >= 0 || len(rel) > 1000 || strings.HasPrefix(rel, "/") {
			return
		}
		path := filepath.Join(base, rel)
		if strings.HasSuffix(rel, "/") {
			path += "/"
		}
		var want unix.Stat_t
		kernelFD, kernelErr := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if kernelErr == nil {
			unix.Fstat(kernelFD, &want)
			unix.Close(kernelFD)
		}
		d, err := OpenDir(path)
		switch {
		case kernelErr != nil && err == nil:
			d.Close()
			t.Fatalf("%s: OpenDir opened what the kernel refuses (%v)", path, kernelErr)
		case kernelErr == nil && err != nil:
			t.Fatalf("%s: %v; the kernel finds a folder", path, err)
		case err == nil:
			var got unix.Stat_t
			unix.Fstat(d.fd, &got)
			d.Close()
			if got.Dev != want.Dev || got.Ino != want.Ino {
				t.Fatalf("%s: OpenDir found another folder than the kernel", path)
			}
		}
	})
}

// TestReplaceTakesOnlyTheFileItWasGiven: the new file takes the place of
// the file the caller checked, with the exact mode; when another file has
// the name by then, that one is left there and nothing else stays behind.
func TestReplaceTakesOnlyTheFileItWasGiven(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cap.pcap")
	if err := os.WriteFile(path, []byte("earlier"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := openDir(t, dir)
	f, info, err := d.Replace("cap.pcap", idOf(t, path), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("new"))
	f.Close()
	if b, _ := os.ReadFile(path); string(b) != "new" || idOf(t, path) != info.ID || info.Mode&0o7777 != 0o600 {
		t.Errorf("%s holds %q, mode %04o; want the new file, 0600", path, b, info.Mode&0o7777)
	}
	noPrivateLeft(t, dir)

	// Another file took the name since it was checked.
	checked := idOf(t, path)
	os.Remove(path)
	os.WriteFile(path, []byte("someone else's"), 0o644)
	if _, _, err := d.Replace("cap.pcap", checked, 0o600); !errors.Is(err, ErrChanged) {
		t.Errorf("Replace of a file swapped since: %v, want ErrChanged", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "someone else's" {
		t.Errorf("the file swapped in was changed: %q", b)
	}
	noPrivateLeft(t, dir)
}
