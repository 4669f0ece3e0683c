package lvmcache

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Abandonment is the removal of the journal of an interrupted resize that
// Resume cannot (or should not) finish, once an admin has looked at the
// LV by hand: the way out of a damaged journal. It changes nothing in
// lvm2 and removes nothing but that LV's journal file.
type Abandonment struct {
	LV   Name
	Path string
	// Records is what the journal says, as far as it can be read.
	Records string
	// Problem is why Resume cannot use the journal, "" when it could.
	Problem string
	// Checks are what to look at, and the lvm2 commands that would finish
	// the resize by hand, before the journal goes.
	Checks []string
	// seen identifies the journal file as planned: Abandon removes it only
	// if it has not changed since.
	seen journalIdentity
}

type journalIdentity struct {
	ino, size int64
	mtime     unix.Timespec
	data      []byte
}

func (a *Abandonment) Commands() []string {
	return []string{"+ " + ShellQuote([]string{"rm", a.Path})}
}

// PlanAbandon reads the LV's journal (as far as it can) and says what it
// records and what to check before it is removed.
func (m *Manager) PlanAbandon(name Name) (*Abandonment, error) {
	fail := func(err error) (*Abandonment, error) {
		return nil, fmt.Errorf("%s: %w", abandonContext(name), err)
	}
	d, err := m.openJournalDir(name)
	if err != nil {
		return fail(err)
	}
	defer d.Close()
	seen, readErr, err := identify(d, name)
	if err != nil {
		return fail(err)
	}
	a := &Abandonment{LV: name, Path: m.journalPath(name), seen: seen}
	var plan *Plan
	if readErr != nil {
		a.Problem, a.Records = readErr.Error(), "nothing readable"
	} else {
		a.Records = describeJournal(seen.data)
		var journalErr *JournalError
		if plan, err = ParseJournal(seen.data, name); errors.As(err, &journalErr) {
			a.Problem = journalErr.Problem
		}
	}
	a.Checks = abandonChecks(name, plan)
	return a, nil
}

// identify finds the journal file without following a link: what it is,
// and its content when it is a regular file (readErr otherwise).
func identify(d *stateDir, name Name) (id journalIdentity, readErr, err error) {
	file := journalFile(name)
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd(), file, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return id, nil, fmt.Errorf("%w of %s is journaled in %s", ErrNoJournal, name, d.path)
	} else if err != nil {
		return id, nil, fmt.Errorf("journal: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return id, nil, fmt.Errorf("journal %s/%s is a folder, not a file opsctl wrote; look at it and remove it yourself", d.path, file)
	}
	id = journalIdentity{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim}
	id.data, readErr = d.readFile(file)
	return id, readErr, nil
}

// abandonChecks are what an admin looks at before dropping a journal: the
// LV as lvm2 reports it, and, where the journal can be read, the lvm2
// commands that finish what it records.
func abandonChecks(name Name, plan *Plan) []string {
	checks := []string{"look at the LV: " + lvsCheck(name)}
	if plan == nil {
		return append(checks, fmt.Sprintf("is %s cached, with the cache (or the settings) recorded above, and of the size you expect? Finish by hand with lvm2 what is missing", name))
	}
	if plan.Op == OpFlush {
		return append(checks, flushChecks(name, plan)...)
	}
	resize := plan.step(StepResize)
	checks = append(checks, fmt.Sprintf("is %s %s (grown) or still %s? To grow it: %s", name, FormatBytes(plan.TargetSizeBytes),
		FormatBytes(plan.OriginalSizeBytes), ShellQuote(append([]string{"lvm"}, resize.Args...))))
	if recache := plan.step(StepRecache); recache != nil {
		checks = append(checks, fmt.Sprintf("is %s cached (segtype cache)? If not, re-create the recorded cache: %s", name, ShellQuote(append([]string{"lvm"}, recache.Args...))))
	}
	return append(checks, fmt.Sprintf("the journal itself is readable: `%s` would finish this", resumeCall(name)))
}

// Abandon removes the journal PlanAbandon looked at, under the LV's lock,
// provided it has not changed since (another opsctl resuming it, say).
func (m *Manager) Abandon(a *Abandonment) error {
	fail := func(err error) error { return fmt.Errorf("%s: %w", abandonContext(a.LV), err) }
	d, err := m.openStateToLook()
	if err != nil {
		return fail(err)
	}
	if d == nil {
		return fail(fmt.Errorf("%w of %s is journaled in %s", ErrNoJournal, a.LV, m.stateDir()))
	}
	defer d.Close()
	unlock, err := d.lockLV(a.LV)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	now, _, err := identify(d, a.LV)
	if err != nil {
		return fail(err)
	}
	if now.ino != a.seen.ino || now.size != a.seen.size || now.mtime != a.seen.mtime || !bytes.Equal(now.data, a.seen.data) {
		return fail(fmt.Errorf("the journal %s changed since it was read (another opsctl resumed it?); nothing was removed, run the command again", a.Path))
	}
	if err := d.removeFile(journalFile(a.LV)); err != nil {
		return fail(err)
	}
	return nil
}

// flushChecks are what an admin looks at before dropping the journal of a
// flush: the policy and runtime migration_threshold it recorded, and the
// commands that put them back.
func flushChecks(name Name, plan *Plan) []string {
	rec := plan.Flush
	policy := plan.step(StepRestorePolicy)
	if policy == nil {
		policy = &Step{Args: []string{"lvchange", "--cachepolicy", rec.Policy, name.String()}}
	}
	threshold := plan.step(StepRestoreThreshold)
	return []string{
		fmt.Sprintf("is the cache policy of %s %s again (lvs -o cache_policy,cache_settings %s)? If not: %s", name, rec.Policy, name,
			ShellQuote(append([]string{"lvm"}, policy.Args...))),
		fmt.Sprintf("is its runtime migration_threshold %d again (dmsetup status %s)? If not: %s", rec.MigrationThreshold, name.DMName(),
			ShellQuote(append([]string{"dmsetup"}, threshold.Args...))),
		fmt.Sprintf("the journal itself is readable: `%s` would finish this", flushResumeCall(name)),
	}
}
