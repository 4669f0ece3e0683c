package sockspy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// fakeOpsctl is an executable named opsctl in a folder of its own.
func fakeOpsctl(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "opsctl")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExtcapLinkInstallsOnceAndRemovesItsOwn(t *testing.T) {
	dir := t.TempDir()
	link := ExtcapLink{Dir: dir, Target: fakeOpsctl(t)}
	if installed, err := link.Install(); err != nil || !installed {
		t.Fatalf("Install: %v, %v", installed, err)
	}
	if target, err := os.Readlink(link.Path()); err != nil || target != link.Target {
		t.Fatalf("%s leads to %q, %v; want %s", link.Path(), target, err, link.Target)
	}
	if installed, err := link.Install(); err != nil || installed {
		t.Errorf("a second Install: %v, %v; want nothing to do", installed, err)
	}
	// A link of an opsctl moved elsewhere since is replaced.
	moved := ExtcapLink{Dir: dir, Target: fakeOpsctl(t)}
	if installed, err := moved.Install(); err != nil || !installed {
		t.Fatalf("Install of another opsctl: %v, %v", installed, err)
	}
	if target, _ := os.Readlink(link.Path()); target != moved.Target {
		t.Errorf("the link leads to %s, want %s", target, moved.Target)
	}
	if removed, err := link.Remove(); err != nil || !removed {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
	if _, err := os.Lstat(link.Path()); !os.IsNotExist(err) {
		t.Errorf("the link is still there: %v", err)
	}
	if removed, err := link.Remove(); err != nil || removed {
		t.Errorf("Remove without a link: %v, %v; want nothing to do", removed, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the folder holds %v", entries)
	}
}

// TestExtcapLinkLeavesWhatIsNotOpsctls: as root in a folder another user
// may write, install and uninstall follow no link at the name, replace or
// remove nothing but opsctl's own link, and refuse a folder that is
// missing or is a link itself.
func TestExtcapLinkLeavesWhatIsNotOpsctls(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(victim, []byte("root's secret\n"), 0o600)
	cases := map[string]struct {
		make func(t *testing.T, path string)
		want string
	}{
		"a link to another file": {func(t *testing.T, p string) { os.Symlink(victim, p) }, "is a link to " + victim + ", not to opsctl"},
		"a dangling link":        {func(t *testing.T, p string) { os.Symlink(filepath.Join(t.TempDir(), "gone"), p) }, "not to opsctl"},
		"a regular file":         {func(t *testing.T, p string) { os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755) }, "is a regular file, not opsctl's link"},
		"a hard link to opsctl":  {func(t *testing.T, p string) { os.Link(fakeOpsctl(t), p) }, "is a regular file, not opsctl's link"},
		"a folder":               {func(t *testing.T, p string) { os.Mkdir(p, 0o755) }, "is a folder, not opsctl's link"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			link := ExtcapLink{Dir: dir, Target: fakeOpsctl(t)}
			tc.make(t, link.Path())
			before, _ := os.Lstat(link.Path())
			if _, err := link.Install(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Install: %v, want an error with %q", err, tc.want)
			}
			if _, err := link.Remove(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Remove: %v, want an error with %q", err, tc.want)
			}
			if after, err := os.Lstat(link.Path()); err != nil || !os.SameFile(before, after) {
				t.Errorf("%s was changed: %v", link.Path(), err)
			}
			if b, _ := os.ReadFile(victim); string(b) != "root's secret\n" {
				t.Errorf("the victim was written: %q", b)
			}
		})
	}
	t.Run("folders", func(t *testing.T) {
		real := t.TempDir()
		linked := filepath.Join(t.TempDir(), "extcap")
		os.Symlink(real, linked)
		for dir, want := range map[string]string{
			filepath.Join(real, "missing"): "folder " + filepath.Join(real, "missing") + " does not exist",
			linked:                         "is a symbolic link (to " + real + "), not followed",
			victim:                         "is not a folder",
		} {
			link := ExtcapLink{Dir: dir, Target: fakeOpsctl(t)}
			for op, do := range map[string]func() (bool, error){"Install": link.Install, "Remove": link.Remove} {
				_, err := do()
				var inputErr *inputerr.Error
				if !errors.As(err, &inputErr) || !strings.Contains(err.Error(), "ExtcapLink.Dir "+dir+": ") || !strings.Contains(err.Error(), want) {
					t.Errorf("%s in %s: %v, want an input error with %q", op, dir, err, want)
				}
			}
		}
		if entries, _ := os.ReadDir(real); len(entries) != 0 {
			t.Errorf("a link was made through the linked folder: %v", entries)
		}
	})
}
