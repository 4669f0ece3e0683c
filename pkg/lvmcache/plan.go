package lvmcache

import (
	"fmt"
	"strings"
	"time"
)

// The operations a Plan carries out.
const (
	OpCreate = "create"
	OpResize = "resize"
	OpRemove = "remove"
	OpFlush  = "flush"
)

// Resize strategies.
const (
	StrategyAuto    = "auto"
	StrategyOnline  = "online"
	StrategyRecache = "recache"
)

// The kinds of step. Each is one lvm2 command, and each has a condition on
// the LV that says whether it has already happened, so an interrupted plan
// can be resumed without repeating a step.
const (
	// StepCreate attaches a new cache (lvcreate --type cache): done when the LV is cached.
	StepCreate = "create-cache"
	// StepUncache flushes the dirty blocks and detaches and deletes the
	// cache (lvconvert --uncache): done when the LV is not cached.
	StepUncache = "uncache"
	// StepResize grows the LV (lvresize): done when the LV has the target size.
	StepResize = "lvresize"
	// StepRecache re-creates the recorded cache: done when the LV is cached.
	StepRecache = "recache"

	// The steps of a flush (flush.go). StepCleanerPolicy switches the cache
	// to the cleaner policy (lvchange --cachepolicy cleaner), which writes
	// every dirty block back and promotes none; StepRaiseThreshold raises
	// the runtime migration_threshold instead (dmsetup message), for the
	// cache's own policy to write back faster; StepWriteBack is opsctl
	// waiting for the dirty blocks to go, no command; StepRestorePolicy
	// puts the recorded policy back in lvm's metadata and the kernel, and
	// StepRestoreThreshold the recorded runtime migration_threshold.
	StepCleanerPolicy    = "cleaner-policy"
	StepRaiseThreshold   = "raise-threshold"
	StepWriteBack        = "write-back"
	StepRestorePolicy    = "restore-policy"
	StepRestoreThreshold = "restore-threshold"
)

// Step states in the journal.
const (
	StatePending = "pending"
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// Step is one lvm2 command of a plan (a dmsetup command when Dmsetup is
// set; StepWriteBack runs none).
type Step struct {
	Kind    string   `json:"kind"`
	Args    []string `json:"args"`
	Dmsetup bool     `json:"dmsetup,omitempty"`
	State   string   `json:"state"`
	// Started and Finished are set when the step ran; Skipped when it was
	// found already done (a resumed plan).
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	Skipped  bool       `json:"skipped,omitempty"`
	// Earlier is set on a step that was done before the plan was resumed.
	Earlier bool   `json:"-"`
	Error   string `json:"error,omitempty"`
	// DirtyBlocks is, for an uncache, the number of dirty blocks when it
	// began: what the flush wrote back.
	DirtyBlocks int64 `json:"dirty_blocks,omitempty"`
}

// Duration is how long the step ran, zero when it did not.
func (s *Step) Duration() time.Duration {
	if s.Started == nil || s.Finished == nil {
		return 0
	}
	return s.Finished.Sub(*s.Started)
}

// Plan is a checked list of lvm2 commands that carries out one operation on
// one LV. It is built by PlanCreate, PlanResize or PlanRemove after every
// preflight check, shown by a dry run, and for a resize saved as the journal
// before each step.
type Plan struct {
	Version  int    `json:"version"`
	Op       string `json:"op"`
	LV       string `json:"lv"`
	Strategy string `json:"strategy,omitempty"`
	// Lvm is the lvm2 executable the plan was made with; Dmsetup the
	// dmsetup one, for a plan that runs it.
	Lvm               string `json:"lvm"`
	Dmsetup           string `json:"dmsetup,omitempty"`
	LVMVersion        string `json:"lvm_version,omitempty"`
	OriginalSizeBytes int64  `json:"original_size_bytes,omitempty"`
	TargetSizeBytes   int64  `json:"target_size_bytes,omitempty"`
	// Cache is the cache as recorded before anything changed: what a
	// recache re-creates.
	Cache *Cache `json:"cache,omitempty"`
	// Flush is what a flush puts back, and until when it runs.
	Flush   *FlushRecord `json:"flush,omitempty"`
	Steps   []Step       `json:"steps"`
	Created time.Time    `json:"created"`
	Updated time.Time    `json:"updated"`
	// Notes explain the plan to a person: shown before confirmation.
	Notes []string `json:"notes,omitempty"`
	// Resumed is set on a plan loaded from its journal.
	Resumed bool `json:"-"`
}

// Name is the LV the plan changes.
func (p *Plan) Name() Name {
	n, _ := ParseName(p.LV)
	return n
}

// Commands are the lvm2 (and dmsetup) command lines of the steps still to
// run, each "+ " and the argv shell-quoted: what a dry run prints.
func (p *Plan) Commands() []string {
	var lines []string
	for _, s := range p.Steps {
		if s.State == StateDone || len(s.Args) == 0 {
			continue
		}
		lines = append(lines, "+ "+ShellQuote(append([]string{p.executable(&s)}, s.Args...)))
	}
	return lines
}

// executable is what runs step: lvm2, or dmsetup.
func (p *Plan) executable(step *Step) string {
	if step.Dmsetup {
		if p.Dmsetup == "" {
			return "dmsetup"
		}
		return p.Dmsetup
	}
	return p.Lvm
}

func (p *Plan) step(kind string) *Step {
	for i := range p.Steps {
		if p.Steps[i].Kind == kind {
			return &p.Steps[i]
		}
	}
	return nil
}

// started reports whether a step of the plan has run or been found done.
func (p *Plan) started() bool {
	for _, s := range p.Steps {
		if s.State != StatePending {
			return true
		}
	}
	return false
}

// FlushedBlocks is the number of dirty blocks the plan's uncache wrote back.
func (p *Plan) FlushedBlocks() int64 {
	if s := p.step(StepUncache); s != nil && !s.Skipped {
		return s.DirtyBlocks
	}
	return 0
}

// lvmSize renders bytes as an lvm2 size argument, in the largest unit that
// divides it exactly (lvm2 reads every unit letter as a power of 1024).
func lvmSize(bytes int64) string {
	for _, u := range []struct {
		letter string
		shift  uint
	}{{"P", 50}, {"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if bytes >= 1<<u.shift && bytes%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", bytes>>u.shift, u.letter)
		}
	}
	return fmt.Sprintf("%db", bytes)
}

// createCacheArgs is the lvcreate of the recipe. The optional settings make
// a re-created cache identical to the recorded one.
func createCacheArgs(name Name, c *Cache, exact bool) []string {
	args := []string{"lvcreate", "--type", "cache", "--cachemode", c.Mode}
	if exact {
		if c.Policy != "" {
			args = append(args, "--cachepolicy", c.Policy)
		}
		for _, setting := range strings.Split(c.Settings, ",") {
			if setting = strings.TrimSpace(setting); setting != "" {
				args = append(args, "--cachesettings", setting)
			}
		}
		if c.ChunkSizeBytes > 0 {
			args = append(args, "--chunksize", lvmSize(c.ChunkSizeBytes))
		}
		if c.MetadataSizeBytes > 0 {
			args = append(args, "--poolmetadatasize", lvmSize(c.MetadataSizeBytes))
		}
	}
	args = append(args, "--name", c.Name, "--size", lvmSize(c.SizeBytes), name.String())
	return append(args, c.PVs...)
}

// recordCache copies what re-creating c needs. A cache left in the cleaner
// policy by an interrupted uncache is re-created with smq, lvm2's default.
func recordCache(c *Cache) *Cache {
	rec := *c
	rec.PVs = append([]string(nil), c.PVs...)
	if rec.Policy == "cleaner" {
		rec.Policy = "smq"
	}
	return &rec
}
