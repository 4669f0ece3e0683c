package lvmcache

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

// recacheJournal is the journal of a recache of storage/slowlv from 96 to
// 100 MiB, stopped during the lvresize, as Apply writes it.
func recacheJournal() []byte {
	started := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	plan := &Plan{Version: 1, Op: OpResize, LV: "storage/slowlv", Strategy: StrategyRecache, Lvm: "lvm", LVMVersion: "2.03.16",
		OriginalSizeBytes: 96 * mib, TargetSizeBytes: 100 * mib,
		Cache: &Cache{Pool: "slowlv_cache_cpool", Name: "slowlv_cache", Mode: "writeback", Policy: "smq", Settings: "migration_threshold=2048",
			ChunkSizeBytes: 64 << 10, SizeBytes: 64 * mib, MetadataSizeBytes: 8 * mib, PVs: []string{"/dev/fast"}},
		Created: started, Updated: started,
		Notes: []string{"flush 300 dirty blocks", "grow", "re-create the same cache"},
	}
	plan.Steps = []Step{
		{Kind: StepUncache, Args: []string{"lvconvert", "--uncache", "storage/slowlv"}, State: StateDone, Started: &started, Finished: &started, DirtyBlocks: 300},
		{Kind: StepResize, Args: []string{"lvresize", "--size", "100M", "storage/slowlv", "/dev/slow"}, State: StateRunning, Started: &started},
		{Kind: StepRecache, Args: createCacheArgs(slowlv, plan.Cache, true), State: StatePending},
	}
	data, _ := json.MarshalIndent(plan, "", "  ")
	return data
}

func onlineJournal() []byte {
	plan := &Plan{Version: 1, Op: OpResize, LV: "storage/slowlv", Strategy: StrategyOnline, Lvm: "lvm",
		OriginalSizeBytes: 96 * mib, TargetSizeBytes: 200 * mib,
		Cache: &Cache{Name: "slowlv_cache", Mode: "writethrough", SizeBytes: 64 * mib, PVs: []string{"/dev/fast", "/dev/nvme0n1p1"}},
		Steps: []Step{{Kind: StepResize, Args: []string{"lvresize", "--size", "200M", "storage/slowlv"}, State: StatePending}},
	}
	data, _ := json.Marshal(plan)
	return data
}

// The options lvm2 may be given from a journal: those of the recipe's
// three commands, and nothing else (no --config, no --force).
var journalFlags = []string{"--uncache", "--type", "--cachemode", "--cachepolicy", "--cachesettings", "--chunksize", "--poolmetadatasize", "--name", "--size"}

// checkAcceptedJournal checks what the journal reader hands Apply,
// rebuilding each argv from the recorded fields independently of
// ParseJournal.
func checkAcceptedJournal(t *testing.T, plan *Plan) {
	t.Helper()
	if plan.Op == OpFlush {
		checkAcceptedFlushJournal(t, plan)
		return
	}
	if plan.Version != 1 || plan.Op != OpResize || plan.LV != "storage/slowlv" || !plan.Resumed || plan.Cache == nil {
		t.Fatalf("accepted %+v", plan)
	}
	if plan.TargetSizeBytes <= plan.OriginalSizeBytes || plan.OriginalSizeBytes <= 0 {
		t.Fatalf("accepted sizes %d -> %d", plan.OriginalSizeBytes, plan.TargetSizeBytes)
	}
	var kinds []string
	for _, step := range plan.Steps {
		kinds = append(kinds, step.Kind)
		for i, arg := range step.Args {
			if strings.HasPrefix(arg, "-") && !slices.Contains(journalFlags, arg) {
				t.Fatalf("step %s: accepted option %q", step.Kind, arg)
			}
			if i > 0 && strings.ContainsAny(arg, "\x00\n") {
				t.Fatalf("step %s: accepted argument %q", step.Kind, arg)
			}
		}
		switch step.Kind {
		case StepUncache:
			if !slices.Equal(step.Args, []string{"lvconvert", "--uncache", "storage/slowlv"}) {
				t.Fatalf("uncache %q", step.Args)
			}
		case StepResize:
			if len(step.Args) < 4 || step.Args[0] != "lvresize" || step.Args[1] != "--size" || step.Args[3] != "storage/slowlv" {
				t.Fatalf("lvresize %q", step.Args)
			}
			if n, err := parseBytes(step.Args[2]); err != nil || n != plan.TargetSizeBytes {
				t.Fatalf("lvresize to %q, the journal's target is %d: %v", step.Args[2], plan.TargetSizeBytes, err)
			}
			for _, pv := range step.Args[4:] {
				if !strings.HasPrefix(pv, "/dev/") || slices.Contains(strings.Split(pv, "/"), "..") {
					t.Fatalf("lvresize onto %q", pv)
				}
			}
		case StepRecache:
			args := step.Args
			pvs := args[len(args)-len(plan.Cache.PVs):]
			if len(args) < 9 || !slices.Equal(args[:5], []string{"lvcreate", "--type", "cache", "--cachemode", plan.Cache.Mode}) ||
				!slices.Equal(pvs, plan.Cache.PVs) || args[len(args)-len(pvs)-1] != "storage/slowlv" {
				t.Fatalf("recache %q of %+v", args, plan.Cache)
			}
			if i := slices.Index(args, "--name"); i < 0 || args[i+1] != plan.Cache.Name {
				t.Fatalf("recache %q names another cache than %q", args, plan.Cache.Name)
			}
			if i := slices.Index(args, "--size"); i < 0 {
				t.Fatalf("recache %q without a size", args)
			} else if n, err := parseBytes(args[i+1]); err != nil || n != plan.Cache.SizeBytes {
				t.Fatalf("recache of %q, the recorded cache has %d bytes", args[i+1], plan.Cache.SizeBytes)
			}
		default:
			t.Fatalf("accepted step %q", step.Kind)
		}
	}
	if want := map[string][]string{StrategyOnline: {StepResize}, StrategyRecache: {StepUncache, StepResize, StepRecache}}[plan.Strategy]; !slices.Equal(kinds, want) {
		t.Fatalf("strategy %q with steps %v", plan.Strategy, kinds)
	}
	// What Apply saves back is read the same way.
	again, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJournal(again, slowlv)
	if err != nil || !slices.Equal(back.Commands(), plan.Commands()) {
		t.Fatalf("the journal saved back does not read the same: %v", err)
	}
}

func checkJournalError(t *testing.T, err error) {
	t.Helper()
	var journalErr *JournalError
	if !errors.As(err, &journalErr) || journalErr.Problem == "" || journalErr.Records == "" || !printableLine(err.Error()) {
		t.Fatalf("error %q: want a one-line *JournalError with a problem and what it records, nothing unprintable", err)
	}
}

// printableLine reports whether s can go to a terminal as one line: no
// newline, no escape sequence, nothing unprintable from the journal.
func printableLine(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func FuzzParseJournal(f *testing.F) {
	f.Add(recacheJournal())
	f.Add(onlineJournal())
	f.Add(flushJournal())
	f.Add(thresholdJournal())
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxJournalBytes {
			return
		}
		if d := describeJournal(data); d == "" || !printableLine(d) {
			t.Fatalf("describeJournal: %q", d)
		}
		plan, err := ParseJournal(data, slowlv)
		if err != nil {
			checkJournalError(t, err)
			return
		}
		checkAcceptedJournal(t, plan)
	})
}

// journalFields are where FuzzJournalField puts its value, in the object
// of recacheJournal: a dotted path, numbers indexing arrays.
var journalFields = []string{
	"version", "op", "lv", "strategy", "original_size_bytes", "target_size_bytes", "lvm", "created", "notes",
	"cache", "cache.name", "cache.pool", "cache.mode", "cache.policy", "cache.settings", "cache.chunk_size_bytes", "cache.size_bytes",
	"cache.metadata_size_bytes", "cache.pvs", "cache.pvs.0",
	"steps", "steps.0", "steps.0.kind", "steps.0.args", "steps.0.args.2", "steps.0.state", "steps.0.dirty_blocks", "steps.0.started",
	"steps.1", "steps.1.kind", "steps.1.args", "steps.1.args.2", "steps.1.args.4", "steps.1.state",
	"steps.2", "steps.2.kind", "steps.2.args", "steps.2.args.8", "steps.2.state", "unknown_field",
}

// identityFields are the fields the argv of the steps or the journal's
// identity depend on: any change to one must be refused.
var identityFields = []string{
	"version", "op", "lv", "strategy", "target_size_bytes",
	"cache", "cache.name", "cache.mode", "cache.policy", "cache.chunk_size_bytes", "cache.size_bytes", "cache.metadata_size_bytes", "cache.pvs", "cache.pvs.0",
	"steps", "steps.0", "steps.0.kind", "steps.0.args", "steps.0.args.2",
	"steps.1", "steps.1.kind", "steps.1.args", "steps.1.args.2",
	"steps.2", "steps.2.kind", "steps.2.args", "steps.2.args.8", "unknown_field",
}

// setField sets the value at path in doc and returns the value it had.
func setField(doc any, path string, value any) (old any, ok bool) {
	keys := strings.Split(path, ".")
	for i, key := range keys {
		last := i == len(keys)-1
		switch node := doc.(type) {
		case map[string]any:
			if last {
				old, ok = node[key]
				node[key] = value
				return old, true
			}
			doc = node[key]
		case []any:
			n, err := strconv.Atoi(key)
			if err != nil || n < 0 || n >= len(node) {
				return nil, false
			}
			if last {
				old = node[n]
				node[n] = value
				return old, true
			}
			doc = node[n]
		default:
			return nil, false
		}
	}
	return nil, false
}

// FuzzJournalField replaces one field of a valid journal by a JSON value
// (null, a wrong type, another string, an array...): the reader never
// panics, what it accepts is sound, and it never accepts a changed field
// that an argv or the journal's identity depends on.
func FuzzJournalField(f *testing.F) {
	for i := range journalFields {
		for _, value := range []string{"null", `"x"`, "1", "[]", "{}", "-1", "1e40", `"/dev/../etc/shadow"`, "true", `"--config"`} {
			f.Add(uint8(i), value)
		}
	}
	f.Fuzz(func(t *testing.T, field uint8, value string) {
		fuzzJournalField(t, recacheJournal(), journalFields, identityFields, field, value)
	})
}

// fuzzJournalField sets the field numbered field of journals (a path of
// fields) to value read as JSON (else as a string) and parses the result:
// an error must be a sound *JournalError, an accepted plan sound, and a
// change to an identity field never accepted. A field the journal leaves
// out (omitempty) set to null or its zero value reads the same.
func fuzzJournalField(t *testing.T, journal []byte, fields, identity []string, field uint8, value string) {
	t.Helper()
	path := fields[int(field)%len(fields)]
	var doc any
	if err := json.Unmarshal(journal, &doc); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		v = value
	}
	old, ok := setField(doc, path, v)
	if !ok {
		return
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return
	}
	plan, err := ParseJournal(data, slowlv)
	if err != nil {
		checkJournalError(t, err)
		return
	}
	checkAcceptedJournal(t, plan)
	if old == nil && (v == nil || v == "" || v == float64(0) || v == false) {
		return
	}
	if slices.Contains(identity, path) && !reflect.DeepEqual(old, v) {
		t.Fatalf("accepted %s changed from %v to %v", path, old, v)
	}
}

func TestTheJournalApplyWritesReadsBack(t *testing.T) {
	for _, data := range [][]byte{recacheJournal(), onlineJournal()} {
		plan, err := ParseJournal(data, slowlv)
		if err != nil {
			t.Fatalf("%v\n%s", err, data)
		}
		checkAcceptedJournal(t, plan)
	}
	m, _ := newFake(t, nil)
	plan := planRecacheBy4MiB(t, m)
	data, _ := json.Marshal(plan)
	if _, err := ParseJournal(data, slowlv); err != nil {
		t.Fatalf("the journal of a fresh plan: %v", err)
	}
}

// TestAJournalWithAnEscapeInATimeIsShownPrintable: a damaged time field
// holding a terminal escape (or DEL) must not reach the terminal through
// the JSON decoder's error, which repeats what it could not read.
func TestAJournalWithAnEscapeInATimeIsShownPrintable(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(recacheJournal(), &doc); err != nil {
		t.Fatal(err)
	}
	doc["created"] = "\x1b[2J\x7f"
	data, _ := json.Marshal(doc)
	_, err := ParseJournal(data, slowlv)
	checkJournalError(t, err)
}
