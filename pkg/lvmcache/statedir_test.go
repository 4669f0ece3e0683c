package lvmcache

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The attacks on the state dir: opsctl runs as root, and whoever can put
// a file there decides which lvm2 commands a --resume runs. These tests
// use only what a resize journal is on disk, so they hold for any way the
// Manager reaches it.

// journalOnDisk writes plan as the journal file of its LV at path.
func journalOnDisk(t *testing.T, path string, plan *Plan) []byte {
	t.Helper()
	data, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

func stateDirReady(t *testing.T, m *Manager) {
	t.Helper()
	if err := os.MkdirAll(m.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
}

func TestASymlinkedJournalIsNeverRead(t *testing.T) {
	m, _ := newFake(t, nil)
	stateDirReady(t, m)
	// Someone plants a link to a journal of theirs: its lvm2 commands
	// would run as root on --resume.
	elsewhere := filepath.Join(t.TempDir(), "theirs.json")
	journalOnDisk(t, elsewhere, planRecacheBy4MiB(t, m))
	if err := os.Symlink(elsewhere, m.journalPath(slowlv)); err != nil {
		t.Fatal(err)
	}
	plan, err := m.LoadJournal(slowlv)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("LoadJournal of a symlinked journal: %v, %+v; want a refusal naming the link", err, plan)
	}
}

func TestAJournalThatIsAFIFOIsRefusedWithoutBlocking(t *testing.T) {
	m, _ := newFake(t, nil)
	stateDirReady(t, m)
	if err := syscall.Mkfifo(m.journalPath(slowlv), 0o600); err != nil {
		t.Fatal(err)
	}
	// Opened for reading, a FIFO without a writer blocks for ever; the
	// test would hang here instead of failing.
	if _, err := m.LoadJournal(slowlv); err == nil || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("LoadJournal of a FIFO: %v; want a refusal naming it", err)
	}
}

func TestASymlinkedLockFileIsNeverFollowed(t *testing.T) {
	m, path := newFake(t, nil)
	stateDirReady(t, m)
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(m.StateDir, "storage-slowlv.lock")); err != nil {
		t.Fatal(err)
	}
	plan, err := m.PlanRemove(context.Background(), slowlv)
	if err == nil {
		err = m.Apply(context.Background(), plan)
	}
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("remove with a symlinked lock file: %v; want a refusal naming the link", err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "root:secret\n" {
		t.Errorf("the link's target was changed: %q", data)
	}
	if ran := changesSince(t, path, 0); len(ran) != 0 {
		t.Errorf("lvm2 changed the LV: %v", ran)
	}
}

func TestAStateDirOthersCanChangeIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, m *Manager)
		want  string
	}{
		{"world-writable", func(t *testing.T, m *Manager) {
			stateDirReady(t, m)
			os.Chmod(m.StateDir, 0o777)
		}, "writable by others"},
		{"group-writable parent", func(t *testing.T, m *Manager) {
			parent := filepath.Join(t.TempDir(), "shared")
			os.Mkdir(parent, 0o775)
			os.Chmod(parent, 0o775)
			m.StateDir = filepath.Join(parent, "state")
			stateDirReady(t, m)
		}, "writable by others"},
		{"owned by another user", func(t *testing.T, m *Manager) {
			stateDirReady(t, m)
			if err := os.Chown(m.StateDir, 65534, 65534); err != nil {
				t.Skip("cannot chown (not root):", err)
			}
		}, "owned by uid 65534"},
		{"reached through a symbolic link", func(t *testing.T, m *Manager) {
			// As systemd makes /var/lib/opsctl a link into
			// /var/lib/private for a DynamicUser service.
			real := filepath.Join(t.TempDir(), "private")
			os.MkdirAll(filepath.Join(real, "lvm"), 0o700)
			link := filepath.Join(t.TempDir(), "opsctl")
			os.Symlink(real, link)
			m.StateDir = filepath.Join(link, "lvm")
		}, "symbolic link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, path := newFake(t, nil)
			tc.setup(t, m)
			plan, err := m.PlanResize(context.Background(), ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: StrategyRecache})
			if err == nil {
				err = m.Apply(context.Background(), plan)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("resize: %v; want a refusal saying %q", err, tc.want)
			}
			if ran := changesSince(t, path, 0); len(ran) != 0 {
				t.Errorf("lvm2 changed the LV: %v", ran)
			}
		})
	}
}

func TestANamedStateDirThatDoesNotExistIsNotCreated(t *testing.T) {
	m, path := newFake(t, nil)
	m.StateDir = filepath.Join(t.TempDir(), "missing", "state")
	plan, err := m.PlanRemove(context.Background(), slowlv)
	if err == nil {
		err = m.Apply(context.Background(), plan)
	}
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("remove with a missing state dir: %v", err)
	}
	if _, statErr := os.Stat(filepath.Dir(m.StateDir)); !os.IsNotExist(statErr) {
		t.Errorf("the missing state dir's parent was created: %v", statErr)
	}
	if ran := changesSince(t, path, 0); len(ran) != 0 {
		t.Errorf("lvm2 changed the LV: %v", ran)
	}
}

func TestTheDefaultStateDirIsMadeOnlyByRootAndClosed(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "var", "lib", "opsctl", "lvm")
	d, err := openStateDir(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for dir, want := range map[string]os.FileMode{filepath.Dir(path): 0o755, path: 0o700} {
		if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", dir, info.Mode(), err, want)
		}
	}
	// A journal replaces nothing that is not a regular file: not a
	// symbolic link someone made, not a folder.
	victim := filepath.Join(base, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	os.Symlink(victim, filepath.Join(path, "vg-lv.json"))
	if err := d.writeFile("vg-lv.json", []byte("{}")); err == nil {
		t.Error("writeFile replaced a symbolic link")
	}
	os.Mkdir(filepath.Join(path, "vg-dir.json"), 0o700)
	if err := d.removeFile("vg-dir.json"); err == nil {
		t.Error("removeFile removed a folder")
	}
	if data, _ := os.ReadFile(victim); string(data) != "keep" {
		t.Errorf("the link's target was changed: %q", data)
	}
}
