package lvmcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

func (m *Manager) stateDir() string {
	if m.StateDir == "" {
		return DefaultStateDir
	}
	return m.StateDir
}

// fileStem names an LV's files in the state dir the way device-mapper
// names its devices: hyphens doubled, VG and LV joined by one hyphen, so
// that no two LVs share a file.
func fileStem(name Name) string {
	return strings.ReplaceAll(name.VG, "-", "--") + "-" + strings.ReplaceAll(name.LV, "-", "--")
}

func (m *Manager) journalPath(name Name) string {
	return filepath.Join(m.stateDir(), fileStem(name)+".json")
}

// ErrNoJournal is wrapped by LoadJournal's error when no resize of the LV
// was interrupted.
var ErrNoJournal = errors.New("no interrupted resize")

// checkNoJournal refuses to start anything on an LV whose resize was
// interrupted: that resize must be finished first.
func (m *Manager) checkNoJournal(name Name) error {
	path := m.journalPath(name)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("an interrupted resize of %s is journaled in %s; finish it with `opsctl lvm cache resize %s --resume`", name, path, name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// checkJournalExists makes sure the journal a resumed plan was loaded from
// is still there: gone, another opsctl has finished that resize.
func (m *Manager) checkJournalExists(name Name) error {
	path := m.journalPath(name)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w of %s is journaled in %s any more: another opsctl finished it", ErrNoJournal, name, m.stateDir())
	} else if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// LoadJournal reads the journal of the LV's interrupted resize: a plan
// that Apply finishes.
func (m *Manager) LoadJournal(name Name) (*Plan, error) {
	path := m.journalPath(name)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lvm cache resize %s --resume: %w of %s is journaled in %s", name, ErrNoJournal, name, m.stateDir())
	}
	if err != nil {
		return nil, fmt.Errorf("lvm cache resize %s --resume: %w", name, err)
	}
	var plan Plan
	if err := json.Unmarshal(data, &plan); err != nil {
		return nil, fmt.Errorf("lvm cache resize %s --resume: journal %s: not a journal of opsctl: %w", name, path, err)
	}
	if plan.Version != 1 || plan.Op != OpResize || plan.LV != name.String() || len(plan.Steps) == 0 {
		return nil, fmt.Errorf("lvm cache resize %s --resume: journal %s: expected a version 1 resize journal of %s", name, path, name)
	}
	for _, step := range plan.Steps {
		if !knownStep(step.Kind) || len(step.Args) == 0 {
			return nil, fmt.Errorf("lvm cache resize %s --resume: journal %s: unknown step %q", name, path, step.Kind)
		}
	}
	for i := range plan.Steps {
		plan.Steps[i].Earlier = plan.Steps[i].State == StateDone
	}
	plan.Resumed = true
	plan.Lvm = m.Runner.Executable()
	return &plan, nil
}

func knownStep(kind string) bool {
	switch kind {
	case StepCreate, StepUncache, StepResize, StepRecache:
		return true
	}
	return false
}

// saveJournal writes the plan atomically and durably: a crash leaves the
// previous journal or the new one, never a torn file.
func (m *Manager) saveJournal(plan *Plan) error {
	dir := m.stateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	data, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	path := m.journalPath(plan.Name())
	tmp, err := os.CreateTemp(dir, ".journal-*")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	return syncDir(dir)
}

func (m *Manager) removeJournal(name Name) error {
	if err := os.Remove(m.journalPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return syncDir(m.stateDir())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", dir, err)
	}
	return nil
}

// ErrBusy is wrapped by the error of a change to an LV that another opsctl
// is changing right now.
var ErrBusy = errors.New("busy")

// lock takes the LV's lock file in the state dir, so two opsctl never work
// on one LV at once. The kernel drops the lock if opsctl dies.
func (m *Manager) lock(name Name) (func(), error) {
	dir := m.stateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, fileStem(name)+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w: another opsctl is changing %s", path, errBusy{}, name)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// errBusy is ErrBusy marked temporary: trying again later may work (exit 75).
type errBusy struct{}

func (errBusy) Error() string        { return ErrBusy.Error() }
func (errBusy) Is(target error) bool { return target == ErrBusy }
func (errBusy) Temporary() bool      { return true }
