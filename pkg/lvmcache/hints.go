package lvmcache

// An interrupted resize is finished by Manager.Resume (then Apply), an
// interrupted flush by Manager.ResumeFlush (then Flush), and either journal
// dropped by Manager.PlanAbandon (then Abandon). Where a message
// points a person to one of them, it names the call with the LV, in the
// package's terms, as input errors name a field (inputerr): a program that
// offers these calls in other words (opsctl: a command line) shows its own
// by renaming these names with inputerr.Rename.

// resumeCall names the call that finishes name's interrupted resize.
func resumeCall(name Name) string { return "Manager.Resume(" + name.String() + ")" }

// abandonCall names the call that drops name's journal.
func abandonCall(name Name) string { return "Manager.PlanAbandon(" + name.String() + ")" }

// resumeContext heads the errors of resuming name's resize.
func resumeContext(name Name) string {
	return "lvm cache resize " + name.String() + " (Manager.Resume)"
}

// abandonContext heads the errors of dropping name's journal.
func abandonContext(name Name) string {
	return "lvm cache resize " + name.String() + " (Manager.PlanAbandon)"
}

// flushResumeCall names the call that finishes name's interrupted flush.
func flushResumeCall(name Name) string { return "Manager.ResumeFlush(" + name.String() + ")" }

// flushResumeContext heads the errors of resuming name's flush.
func flushResumeContext(name Name) string {
	return "lvm cache flush " + name.String() + " (Manager.ResumeFlush)"
}
