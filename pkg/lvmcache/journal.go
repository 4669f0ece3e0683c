package lvmcache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
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

func journalFile(name Name) string { return fileStem(name) + ".json" }

func (m *Manager) journalPath(name Name) string {
	return filepath.Join(m.stateDir(), journalFile(name))
}

// openState opens the state dir for a change. The default one is made
// when missing; one the caller named must exist (ErrNoStateDir).
func (m *Manager) openState() (*stateDir, error) {
	return openStateDir(m.stateDir(), m.StateDir == "")
}

// openStateToLook opens the state dir to look for a journal or a lock. A
// default state dir that does not exist yet holds neither: nil, nil.
func (m *Manager) openStateToLook() (*stateDir, error) {
	d, err := openStateDir(m.stateDir(), false)
	if errors.Is(err, ErrNoStateDir) && m.StateDir == "" {
		return nil, nil
	}
	return d, err
}

// ErrNoJournal is wrapped by LoadJournal's error when no resize of the LV
// was interrupted.
var ErrNoJournal = errors.New("no interrupted resize")

// checkLVFree refuses to plan a change of an LV that another opsctl is
// changing right now (a BusyError: try again) or whose resize was
// interrupted (its journal must be finished or abandoned first).
func (m *Manager) checkLVFree(name Name) error {
	d, err := m.openStateToLook()
	if err != nil || d == nil {
		return err
	}
	defer d.Close()
	if busy, err := d.lockedBy(name); err != nil {
		return err
	} else if busy != nil {
		return busy
	}
	return m.checkNoJournal(d, name)
}

// checkNoJournal refuses to start anything on an LV whose resize was
// interrupted: that resize must be finished first.
func (m *Manager) checkNoJournal(d *stateDir, name Name) error {
	exists, _, err := d.regularAt(journalFile(name))
	if err != nil || !exists {
		return err
	}
	records, op := "it cannot be read", OpResize
	if data, err := d.readFile(journalFile(name)); err == nil {
		records, op = describeJournal(data), journalOp(data)
	}
	call := resumeCall(name)
	if op == OpFlush {
		call = flushResumeCall(name)
	} else {
		op = OpResize
	}
	return fmt.Errorf("an interrupted %s of %s is journaled in %s (%s); finish it with `%s`",
		op, name, m.journalPath(name), records, call)
}

// journalOp is the operation a journal records, "" when it cannot tell.
func journalOp(data []byte) string {
	var doc struct {
		Op string `json:"op"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return ""
	}
	return doc.Op
}

// checkJournalExists makes sure the journal a resumed plan was loaded from
// is still there: gone, another opsctl has finished that resize.
func (m *Manager) checkJournalExists(d *stateDir, name Name) error {
	exists, _, err := d.regularAt(journalFile(name))
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if !exists {
		return fmt.Errorf("%w of %s is journaled in %s any more: another opsctl finished it", ErrNoJournal, name, m.stateDir())
	}
	return nil
}

// openJournalDir opens the state dir to read name's journal: an error
// wrapping ErrNoJournal when there is no state dir yet, a *BusyError while
// another opsctl holds the LV (that resize is running, not interrupted).
func (m *Manager) openJournalDir(name Name) (*stateDir, error) {
	d, err := m.openStateToLook()
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, fmt.Errorf("%w of %s is journaled in %s", ErrNoJournal, name, m.stateDir())
	}
	busy, err := d.lockedBy(name)
	if err == nil && busy != nil {
		err = busy
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// LoadJournal reads the journal of the LV's interrupted resize (or flush):
// a plan that Apply (or Flush) finishes. A journal that is not one opsctl
// wrote is a *JournalError saying what it records as far as it can be
// read, and how to get out.
func (m *Manager) LoadJournal(name Name) (*Plan, error) {
	return m.loadJournal(name, resumeContext(name))
}

// loadJournal is LoadJournal with context heading its errors.
func (m *Manager) loadJournal(name Name, context string) (*Plan, error) {
	fail := func(err error) (*Plan, error) { return nil, fmt.Errorf("%s: %w", context, err) }
	d, err := m.openJournalDir(name)
	if err != nil {
		return fail(err)
	}
	defer d.Close()
	if exists, _, err := d.regularAt(journalFile(name)); err != nil {
		return fail(err)
	} else if !exists {
		return fail(fmt.Errorf("%w of %s is journaled in %s", ErrNoJournal, name, m.stateDir()))
	}
	data, err := d.readFile(journalFile(name))
	if err != nil {
		return fail(&JournalError{Path: m.journalPath(name), LV: name, Problem: err.Error()})
	}
	plan, err := ParseJournal(data, name)
	if err != nil {
		var journalErr *JournalError
		if errors.As(err, &journalErr) {
			journalErr.Path = m.journalPath(name)
		}
		return fail(err)
	}
	plan.Lvm = m.Runner.Executable()
	if plan.Op == OpFlush {
		plan.Dmsetup = m.Runner.DmsetupExecutable()
	}
	return plan, nil
}

// JournalError is a journal opsctl cannot resume from: unreadable, or not
// the shape opsctl writes. It says what the journal records as far as it
// can be read, what to check by hand, and the way out: PlanAbandon.
type JournalError struct {
	Path    string
	LV      Name
	Problem string
	// Records is what the journal says, as far as it can be read.
	Records string
}

func (e *JournalError) Error() string {
	records := e.Records
	if records == "" {
		records = "nothing readable"
	}
	return fmt.Sprintf("journal %s is not one opsctl can resume (%s); as far as it can be read it records: %s; check %s by hand (%s) and finish what is missing with lvm2, then drop the journal with `%s`",
		e.Path, e.Problem, records, e.LV, lvsCheck(e.LV), abandonCall(e.LV))
}

// lvsCheck is the lvm2 report that shows what a resize changed.
func lvsCheck(name Name) string {
	return "lvm lvs -a -o lv_name,lv_size,segtype,cache_mode,cache_dirty_blocks,devices " + name.VG
}

// The shapes of argv a journal may hold, beyond the ones derived exactly
// from its fields: a PV path, a --cachesettings value, a cache policy.
var (
	journalPVPath       = regexp.MustCompile(`^/dev/[A-Za-z0-9+_.:@/=-]+$`)
	journalCacheSetting = regexp.MustCompile(`^[A-Za-z0-9_]+=[A-Za-z0-9_.]+$`)
	journalWord         = regexp.MustCompile(`^[a-z0-9_]+$`)
)

// ParseJournal reads a resize journal of the LV name. It accepts only what
// opsctl writes: version 1, a resize of that LV, the steps of its strategy
// in order, and for each step exactly the lvm2 arguments its recorded
// fields imply, so that a damaged journal never makes opsctl run a command
// its plan would not. Anything else is a *JournalError.
func ParseJournal(data []byte, name Name) (*Plan, error) {
	bad := func(format string, args ...any) (*Plan, error) {
		return nil, &JournalError{LV: name, Problem: fmt.Sprintf(format, args...), Records: describeJournal(data)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var plan Plan
	if err := dec.Decode(&plan); err != nil {
		// The decoder quotes what it could not read: a damaged field's
		// DEL or terminal escape must not reach the terminal.
		return bad("not the JSON of a journal: %s", printable(err.Error()))
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("more data after the journal")
	}
	if plan.Version != 1 {
		return bad("version %d, expected 1", plan.Version)
	}
	if plan.Op != OpResize && plan.Op != OpFlush {
		return bad("op %q, expected %q or %q", plan.Op, OpResize, OpFlush)
	}
	if plan.LV != name.String() {
		return bad("it is the journal of %q, expected %s", plan.LV, name)
	}
	if plan.Op == OpFlush {
		if problem := checkFlushRecordShape(data); problem != "" {
			return bad("%s", problem)
		}
		if problem := checkFlushJournal(&plan, name); problem != "" {
			return bad("%s", problem)
		}
		return resumedPlan(&plan), nil
	}
	if plan.Flush != nil {
		return bad("a resize with a flush record")
	}
	if plan.OriginalSizeBytes <= 0 || plan.TargetSizeBytes <= plan.OriginalSizeBytes {
		return bad("sizes %d to %d bytes, expected a growth", plan.OriginalSizeBytes, plan.TargetSizeBytes)
	}
	if err := checkJournalCache(plan.Cache); err != nil {
		return bad("recorded cache: %v", err)
	}
	var kinds []string
	switch plan.Strategy {
	case StrategyOnline:
		kinds = []string{StepResize}
	case StrategyRecache:
		kinds = []string{StepUncache, StepResize, StepRecache}
	default:
		return bad("strategy %q, expected online or recache", plan.Strategy)
	}
	if len(plan.Steps) != len(kinds) {
		return bad("%d steps, expected %d for %s", len(plan.Steps), len(kinds), plan.Strategy)
	}
	for i := range plan.Steps {
		step := &plan.Steps[i]
		if step.Kind != kinds[i] {
			return bad("step %d is %q, expected %q", i+1, step.Kind, kinds[i])
		}
		switch step.State {
		case StatePending, StateRunning, StateDone, StateFailed:
		default:
			return bad("step %s has state %q, expected pending, running, done or failed", step.Kind, step.State)
		}
		if step.DirtyBlocks < 0 {
			return bad("step %s: dirty blocks %d", step.Kind, step.DirtyBlocks)
		}
		if step.Dmsetup {
			return bad("step %s: a dmsetup step in a resize", step.Kind)
		}
		if err := checkJournalArgs(&plan, step); err != nil {
			return bad("step %s: %v", step.Kind, err)
		}
	}
	return resumedPlan(&plan), nil
}

// resumedPlan marks a plan read from its journal.
func resumedPlan(plan *Plan) *Plan {
	for i := range plan.Steps {
		plan.Steps[i].Earlier = plan.Steps[i].State == StateDone
	}
	plan.Resumed = true
	return plan
}

// checkJournalCache checks the recorded cache a recache re-creates.
func checkJournalCache(c *Cache) error {
	switch {
	case c == nil:
		return errors.New("missing")
	case !ValidLVName(c.Name):
		return fmt.Errorf("name %q is not an LV name", c.Name)
	case c.Pool != "" && !lvmName.MatchString(c.Pool):
		return fmt.Errorf("pool %q is not an LV name", c.Pool)
	case c.Mode != "writeback" && c.Mode != "writethrough" && c.Mode != "passthrough":
		return fmt.Errorf("mode %q, expected writeback, writethrough or passthrough", c.Mode)
	case c.Policy != "" && !journalWord.MatchString(c.Policy):
		return fmt.Errorf("policy %q is not a cache policy name", c.Policy)
	case c.SizeBytes <= 0 || c.ChunkSizeBytes < 0 || c.MetadataSizeBytes < 0:
		return fmt.Errorf("sizes %d, chunk %d, metadata %d bytes", c.SizeBytes, c.ChunkSizeBytes, c.MetadataSizeBytes)
	case len(c.PVs) == 0:
		return errors.New("no PV")
	}
	for _, setting := range strings.Split(c.Settings, ",") {
		if setting = strings.TrimSpace(setting); setting != "" && !journalCacheSetting.MatchString(setting) {
			return fmt.Errorf("cache setting %q, expected KEY=VALUE", setting)
		}
	}
	for _, pv := range c.PVs {
		if !isJournalPV(pv) {
			return fmt.Errorf("PV %q is not a device path", pv)
		}
	}
	return nil
}

func isJournalPV(pv string) bool {
	return journalPVPath.MatchString(pv) && !slices.Contains(strings.Split(pv, "/"), "..")
}

// checkJournalArgs checks that a step's argv is the one its plan implies.
func checkJournalArgs(plan *Plan, step *Step) error {
	name := plan.Name()
	var want []string
	switch step.Kind {
	case StepUncache:
		want = []string{"lvconvert", "--uncache", name.String()}
	case StepRecache:
		want = createCacheArgs(name, plan.Cache, true)
	case StepResize:
		prefix := []string{"lvresize", "--size", lvmSize(plan.TargetSizeBytes), name.String()}
		if len(step.Args) < len(prefix) || !slices.Equal(step.Args[:len(prefix)], prefix) {
			return fmt.Errorf("arguments %q, expected %q and the PVs to grow on", step.Args, prefix)
		}
		for i, pv := range step.Args[len(prefix):] {
			switch {
			case !isJournalPV(pv):
				return fmt.Errorf("PV %q is not a device path", pv)
			case slices.Contains(step.Args[len(prefix):len(prefix)+i], pv):
				return fmt.Errorf("PV %s given twice", pv)
			case plan.Strategy == StrategyRecache && slices.Contains(plan.Cache.PVs, pv):
				return fmt.Errorf("grows on the cache's PV %s, where the re-created cache would not fit", pv)
			}
		}
		return nil
	}
	if !slices.Equal(step.Args, want) {
		return fmt.Errorf("arguments %q, expected %q", step.Args, want)
	}
	return nil
}

// describeJournal says what a journal records, as far as it can be read:
// for a person deciding by hand what a resize has done. It never fails.
func describeJournal(data []byte) string {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		return fmt.Sprintf("nothing readable (%d bytes that are not a JSON object)", len(data))
	}
	str := func(m map[string]any, key string) string {
		s, _ := m[key].(string)
		return printable(s)
	}
	size := func(m map[string]any, key string) string {
		if n, ok := m[key].(float64); ok && n > 0 && n < 1<<62 {
			return FormatBytes(int64(n))
		}
		return "?"
	}
	var parts []string
	what := "a " + orUnknown(str(doc, "op"))
	if lv := str(doc, "lv"); lv != "" {
		what += " of " + lv
	}
	if _, ok := doc["target_size_bytes"]; ok {
		what += " from " + size(doc, "original_size_bytes") + " to " + size(doc, "target_size_bytes")
	}
	if s := str(doc, "strategy"); s != "" {
		what += " by " + s
	}
	parts = append(parts, what)
	if steps, ok := doc["steps"].([]any); ok {
		var states []string
		for _, s := range steps {
			if step, ok := s.(map[string]any); ok {
				states = append(states, orUnknown(str(step, "kind"))+" "+orUnknown(str(step, "state")))
			}
		}
		if len(states) > 0 {
			parts = append(parts, "steps "+strings.Join(states, ", "))
		}
	}
	if c, ok := doc["cache"].(map[string]any); ok {
		var pvs []string
		if list, ok := c["pvs"].([]any); ok {
			for _, pv := range list {
				if s, ok := pv.(string); ok {
					pvs = append(pvs, printable(s))
				}
			}
		}
		cache := fmt.Sprintf("the cache %s of %s, %s, policy %s, chunk %s on %s", orUnknown(str(c, "name")), size(c, "size_bytes"),
			orUnknown(str(c, "mode")), orUnknown(str(c, "policy")), size(c, "chunk_size_bytes"), orUnknown(strings.Join(pvs, ", ")))
		if settings := str(c, "settings"); settings != "" {
			cache += ", settings " + settings
		}
		parts = append(parts, cache)
	}
	if flush, ok := doc["flush"].(map[string]any); ok {
		threshold := "?"
		if n, ok := flush["migration_threshold"].(float64); ok && n >= 0 && n < 1<<62 {
			threshold = strconv.FormatInt(int64(n), 10)
		}
		put := fmt.Sprintf("the settings to put back: policy %s, migration_threshold %s", orUnknown(str(flush, "policy")), threshold)
		if settings := str(flush, "settings"); settings != "" {
			put += ", settings " + settings
		}
		parts = append(parts, put)
	}
	return strings.Join(parts, "; ")
}

// printable renders a string read from a journal for a one-line message:
// quoted when it holds anything but printable characters (a newline, a
// terminal escape), cut short when long.
func printable(s string) string {
	const most = 120
	if len(s) > most {
		s = s[:most] + "..."
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// saveJournal writes the plan into the state dir atomically and durably.
func (m *Manager) saveJournal(d *stateDir, plan *Plan) error {
	data, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := d.writeFile(journalFile(plan.Name()), append(data, '\n')); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

func (m *Manager) removeJournal(d *stateDir, name Name) error {
	if err := d.removeFile(journalFile(name)); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}
