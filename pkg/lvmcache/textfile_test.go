package lvmcache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

func TestWriteTextfileReplacesItsFileAtomically(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, data := range []string{"first\n", "second\n"} {
		if err := WriteTextfile(dir, TextfileName, []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, TextfileName))
		if err != nil || string(got) != data {
			t.Errorf("file holds %q, %v; want %q", got, err, data)
		}
	}
	info, err := os.Stat(filepath.Join(dir, TextfileName))
	if err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644 (the collector's user reads it) whatever the umask", info.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestWriteTextfileNeverFollowsOrReplacesWhatAnotherUserPutThere: the
// folder's owner plants a symbolic link to a file of root's, a FIFO, a
// folder at the file's name: none is followed, replaced or removed, and
// the file of root's is untouched.
func TestWriteTextfileNeverFollowsOrReplacesWhatAnotherUserPutThere(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plant := map[string]func(path string) error{
		"a symbolic link": func(path string) error { return os.Symlink(victim, path) },
		"a FIFO":          func(path string) error { return syscall.Mkfifo(path, 0o644) },
		"a folder":        func(path string) error { return os.Mkdir(path, 0o755) },
	}
	for kind, make := range plant {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, TextfileName)
			if err := make(target); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(target)
			err := WriteTextfile(dir, TextfileName, []byte("metrics\n"))
			if err == nil || !strings.Contains(err.Error(), kind+" there") {
				t.Errorf("WriteTextfile over %s: %v", kind, err)
			}
			after, err := os.Lstat(target)
			if err != nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
				t.Errorf("%s was replaced: %v %v", kind, after, err)
			}
			if data, _ := os.ReadFile(victim); string(data) != "root's\n" {
				t.Errorf("the link's target was written: %q", data)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

// TestWriteTextfileRacingARenamerNeverDestroysTheFIFO: the folder's owner
// keeps renaming a FIFO into the file's place and out again while root
// writes: whatever the timing, the FIFO is never replaced (it is always
// somewhere in the folder), and every write that succeeds leaves a regular
// file with the data.
func TestWriteTextfileRacingARenamerNeverDestroysTheFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	target := filepath.Join(dir, TextfileName)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.Rename(fifo, target)
			if info, err := os.Lstat(target); err == nil && info.Mode()&os.ModeNamedPipe != 0 {
				_ = os.Rename(target, fifo)
			}
		}
	}()
	for i := 0; i < 500; i++ {
		_ = WriteTextfile(dir, TextfileName, []byte("metrics\n"))
	}
	close(stop)
	wg.Wait()
	// The FIFO is somewhere in the folder: under its name, the file's, or
	// a temporary name where a write that lost the race left it.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		found = found || e.Type()&os.ModeNamedPipe != 0
	}
	if !found {
		t.Fatalf("the FIFO was removed by a write; the folder holds %v", entries)
	}
}

func TestWriteTextfileNeedsAFolderThatIsThere(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o644)
	link := filepath.Join(base, "link")
	os.Symlink(base, link)
	for path, want := range map[string]syscall.Errno{
		filepath.Join(base, "missing"): syscall.ENOENT,
		file:                           syscall.ENOTDIR,
		link:                           syscall.ELOOP,
	} {
		err := WriteTextfile(path, TextfileName, []byte("x\n"))
		var dirErr *TextfileDirError
		if !errors.Is(err, want) || !errors.As(err, &dirErr) {
			t.Errorf("%s: %v, want %v", path, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(base, TextfileName)); err == nil {
		t.Error("written through the link to the folder")
	}
}

// TestWriteTextfileRefusesAnotherUsersLinkOnTheWay: DIR's parent belongs
// to the collector's user, who replaces a folder on the way to DIR with a
// symbolic link to a folder of root's (/etc, say). Root must not follow
// that link and create its file there: the folder is refused, as a
// symbolic link in DIR's place is, and root's folder stays empty.
func TestWriteTextfileRefusesAnotherUsersLinkOnTheWay(t *testing.T) {
	testenv.NeedRoot(t)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		os.Chmod(d, 0o755)
	}
	roots := filepath.Join(base, "etc", "cron.d")
	if err := os.MkdirAll(roots, 0o755); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(base, "node_exporter")
	if err := os.Mkdir(users, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(users, 65534, 65534)
	// Was node_exporter/textfile/cron.d, a folder; now a link of the user's.
	link := filepath.Join(users, "textfile")
	if err := os.Symlink(filepath.Join(base, "etc"), link); err != nil {
		t.Fatal(err)
	}
	os.Lchown(link, 65534, 65534)
	err := WriteTextfile(filepath.Join(link, "cron.d"), TextfileName, []byte("metrics\n"))
	var dirErr *TextfileDirError
	if !errors.As(err, &dirErr) || !errors.Is(err, syscall.ELOOP) {
		t.Errorf("WriteTextfile through another user's link: %v; want a *TextfileDirError wrapping ELOOP", err)
	}
	if entries, _ := os.ReadDir(roots); len(entries) != 0 {
		t.Errorf("root's folder was written through the user's link: %v", entries)
	}
}
