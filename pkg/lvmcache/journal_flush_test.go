package lvmcache

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// flushJournal is the journal of a flush of storage/slowlv by the cleaner
// policy, killed during its write-back, as Flush writes it.
func flushJournal() []byte {
	started := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	until := started.Add(8 * time.Hour)
	rec := &FlushRecord{Method: FlushCleaner, Policy: "smq", Settings: "migration_threshold=4096", MigrationThreshold: 0,
		Until: &until, DirtyBlocks: 300, ChunkSizeBytes: 64 << 10}
	plan := &Plan{Version: 1, Op: OpFlush, LV: "storage/slowlv", Lvm: "lvm", Dmsetup: "dmsetup", OriginalSizeBytes: 96 * mib,
		Flush: rec, Steps: flushSteps(slowlv, rec, 128), Created: started, Updated: started}
	plan.Steps[0].State, plan.Steps[0].Started, plan.Steps[0].Finished = StateDone, &started, &started
	plan.Steps[1].State, plan.Steps[1].Started = StateRunning, &started
	data, _ := json.MarshalIndent(plan, "", "  ")
	return data
}

// thresholdJournal is the journal of a flush by migration_threshold.
func thresholdJournal() []byte {
	rec := &FlushRecord{Method: FlushThreshold, Policy: "smq", MigrationThreshold: 2048, DirtyBlocks: 12, ChunkSizeBytes: 1 << 20}
	plan := &Plan{Version: 1, Op: OpFlush, LV: "storage/slowlv", Lvm: "lvm", Flush: rec, Steps: flushSteps(slowlv, rec, 2048)}
	data, _ := json.Marshal(plan)
	return data
}

// checkAcceptedFlushJournal checks what the journal reader hands Flush,
// rebuilding each argv from the record independently of ParseJournal:
// lvchange of the policy (cleaner, or the recorded one back) and dmsetup
// messages of migration_threshold, to storage/slowlv's device only.
func checkAcceptedFlushJournal(t *testing.T, plan *Plan) {
	t.Helper()
	rec := plan.Flush
	if plan.Op != OpFlush || plan.LV != "storage/slowlv" || !plan.Resumed || rec == nil || plan.Cache != nil {
		t.Fatalf("accepted %+v", plan)
	}
	if rec.Policy == "cleaner" || !journalWord.MatchString(rec.Policy) || rec.MigrationThreshold < 0 {
		t.Fatalf("accepted record %+v", rec)
	}
	var kinds []string
	for _, step := range plan.Steps {
		kinds = append(kinds, step.Kind)
		switch step.Kind {
		case StepCleanerPolicy:
			if !slices.Equal(step.Args, []string{"lvchange", "--cachepolicy", "cleaner", "storage/slowlv"}) || step.Dmsetup {
				t.Fatalf("cleaner %q", step.Args)
			}
		case StepRestorePolicy:
			if !slices.Equal(step.Args, []string{"lvchange", "--cachepolicy", rec.Policy, "storage/slowlv"}) || step.Dmsetup {
				t.Fatalf("restore policy %q of %+v", step.Args, rec)
			}
		case StepRaiseThreshold, StepRestoreThreshold:
			if !step.Dmsetup || len(step.Args) != 5 || !slices.Equal(step.Args[:4], []string{"message", "storage-slowlv", "0", "migration_threshold"}) {
				t.Fatalf("%s %q", step.Kind, step.Args)
			}
			n, err := strconv.ParseInt(step.Args[4], 10, 64)
			if err != nil || n < 0 || (step.Kind == StepRestoreThreshold && n != rec.MigrationThreshold) {
				t.Fatalf("%s to %q, recorded %d", step.Kind, step.Args[4], rec.MigrationThreshold)
			}
		case StepWriteBack:
			if len(step.Args) != 0 || step.Dmsetup {
				t.Fatalf("write-back runs %q", step.Args)
			}
		default:
			t.Fatalf("accepted step %q", step.Kind)
		}
	}
	want := map[string][]string{FlushCleaner: {StepCleanerPolicy, StepWriteBack, StepRestorePolicy, StepRestoreThreshold},
		FlushThreshold: {StepRaiseThreshold, StepWriteBack, StepRestoreThreshold}}[rec.Method]
	if !slices.Equal(kinds, want) {
		t.Fatalf("method %q with steps %v", rec.Method, kinds)
	}
}

func TestTheJournalFlushWritesReadsBack(t *testing.T) {
	for _, data := range [][]byte{flushJournal(), thresholdJournal()} {
		plan, err := ParseJournal(data, slowlv)
		if err != nil {
			t.Fatalf("%v\n%s", err, data)
		}
		checkAcceptedFlushJournal(t, plan)
	}
	d := describeJournal(flushJournal())
	for _, want := range []string{"a flush of storage/slowlv", "steps cleaner-policy done, write-back running, restore-policy pending, restore-threshold pending",
		"the settings to put back: policy smq, migration_threshold 0, settings migration_threshold=4096"} {
		if !strings.Contains(d, want) {
			t.Errorf("describeJournal: %q lacks %q", d, want)
		}
	}
}

// flushJournalFields are where FuzzFlushJournalField puts its value.
var flushJournalFields = []string{
	"version", "op", "lv", "strategy", "cache", "target_size_bytes", "dmsetup", "unknown_field",
	"flush", "flush.method", "flush.policy", "flush.settings", "flush.migration_threshold", "flush.until", "flush.dirty_blocks", "flush.chunk_size_bytes",
	"steps", "steps.0", "steps.0.kind", "steps.0.args", "steps.0.args.2", "steps.0.args.3", "steps.0.dmsetup", "steps.0.state",
	"steps.1", "steps.1.kind", "steps.1.args", "steps.1.dmsetup",
	"steps.2", "steps.2.kind", "steps.2.args", "steps.2.args.2", "steps.2.dmsetup",
	"steps.3", "steps.3.kind", "steps.3.args", "steps.3.args.1", "steps.3.args.4", "steps.3.dmsetup",
}

// flushIdentityFields are those an argv or what is put back depends on:
// any change to one must be refused. Not flush.settings: a flush never
// passes settings to lvm2 (lvchange --cachepolicy keeps those of lvm's
// metadata), the record only reports them.
var flushIdentityFields = []string{
	"version", "op", "lv", "strategy", "cache", "target_size_bytes", "unknown_field",
	"flush", "flush.method", "flush.policy", "flush.migration_threshold",
	"steps", "steps.0", "steps.0.kind", "steps.0.args", "steps.0.args.2", "steps.0.args.3", "steps.0.dmsetup",
	"steps.1", "steps.1.kind", "steps.1.dmsetup",
	"steps.2", "steps.2.kind", "steps.2.args", "steps.2.args.2", "steps.2.dmsetup",
	"steps.3", "steps.3.kind", "steps.3.args", "steps.3.args.1", "steps.3.args.4", "steps.3.dmsetup",
}

// FuzzFlushJournalField replaces one field of a flush journal by a JSON
// value: the reader never panics, what it accepts is sound, and it never
// accepts a change to a field an argv or a restored setting depends on.
func FuzzFlushJournalField(f *testing.F) {
	for i := range flushJournalFields {
		for _, value := range []string{"null", `"x"`, "1", "[]", "{}", "-1", "true", `"cleaner"`, `"--config"`, `"lvremove"`, `"99999999999"`} {
			f.Add(uint8(i), value)
		}
	}
	f.Fuzz(func(t *testing.T, field uint8, value string) {
		fuzzJournalField(t, flushJournal(), flushJournalFields, flushIdentityFields, field, value)
	})
}

// TestAFlushJournalWithAnEscapeInATimeIsShownPrintable: the same for the
// journal of a flush.
func TestAFlushJournalWithAnEscapeInATimeIsShownPrintable(t *testing.T) {
	for _, journal := range [][]byte{flushJournal()} {
		var doc map[string]any
		if err := json.Unmarshal(journal, &doc); err != nil {
			t.Fatal(err)
		}
		doc["created"] = "\x1b[2J\x7f"
		data, _ := json.Marshal(doc)
		_, err := ParseJournal(data, slowlv)
		checkJournalError(t, err)
	}
}
