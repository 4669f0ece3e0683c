package lvmcache

import (
	"os"
	"strings"
	"testing"
)

// TestAbandonRemovesNothingThatChangedSinceItWasShown: the admin looked at
// one journal; if another opsctl resumed and rewrote it meanwhile, the new
// one stays.
func TestAbandonRemovesNothingThatChangedSinceItWasShown(t *testing.T) {
	m, _ := newFake(t, nil)
	path := m.journalPath(slowlv)
	if err := os.WriteFile(path, recacheJournal(), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := m.PlanAbandon(slowlv)
	if err != nil {
		t.Fatal(err)
	}
	if a.Problem != "" || !strings.Contains(strings.Join(a.Checks, "\n"), "lvm lvcreate --type cache --cachemode writeback --cachepolicy smq") {
		t.Errorf("a readable journal: problem %q, checks %q; want the recache command to check", a.Problem, a.Checks)
	}
	rewritten := append(recacheJournal(), '\n')
	if err := os.WriteFile(path, rewritten, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Abandon(a); err == nil || !strings.Contains(err.Error(), "changed since it was read") {
		t.Errorf("Abandon of a rewritten journal: %v", err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != string(rewritten) {
		t.Errorf("the rewritten journal: %v", err)
	}
	// Shown again, it goes.
	if a, err = m.PlanAbandon(slowlv); err != nil {
		t.Fatal(err)
	}
	if err := m.Abandon(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("journal still there: %v", err)
	}
}

func TestAbandonWhileAnotherOpsctlHoldsTheLVIsBusy(t *testing.T) {
	m, _ := newFake(t, nil)
	if err := os.WriteFile(m.journalPath(slowlv), recacheJournal(), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := m.PlanAbandon(slowlv)
	if err != nil {
		t.Fatal(err)
	}
	unlock := holdLock(t, m, slowlv)
	defer unlock()
	if _, err := m.PlanAbandon(slowlv); err == nil || !strings.Contains(err.Error(), "another opsctl is changing") {
		t.Errorf("PlanAbandon while locked: %v", err)
	}
	if err := m.Abandon(a); err == nil || !strings.Contains(err.Error(), "another opsctl is changing") {
		t.Errorf("Abandon while locked: %v", err)
	}
	if _, err := os.Stat(m.journalPath(slowlv)); err != nil {
		t.Errorf("the journal of a running resize was removed: %v", err)
	}
}
