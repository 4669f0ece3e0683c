package lvmcache

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// journalSectors is a migration_threshold as a flush journal may hold it.
var journalSectors = regexp.MustCompile(`^[0-9]{1,10}$`)

// checkFlushJournal checks a flush journal the way ParseJournal checks a
// resize's: what it will put back must be a policy name and KEY=VALUE
// settings, its steps those of its method in order, and each step exactly
// the command its record implies, so that a damaged journal never makes
// opsctl run a command its plan would not. It returns the problem, "" for
// none.
func checkFlushJournal(plan *Plan, name Name) string {
	rec := plan.Flush
	switch {
	case rec == nil:
		return "no flush record"
	case plan.Cache != nil || plan.Strategy != "" || plan.TargetSizeBytes != 0:
		return "a flush with the fields of a resize"
	case rec.Method != FlushCleaner && rec.Method != FlushThreshold:
		return fmt.Sprintf("method %q, expected %s or %s", rec.Method, FlushCleaner, FlushThreshold)
	case !journalWord.MatchString(rec.Policy) || rec.Policy == "cleaner":
		return fmt.Sprintf("policy %q is not one a flush puts back", rec.Policy)
	case rec.MigrationThreshold < 0 || rec.MigrationThreshold > maxMigrationThreshold:
		return fmt.Sprintf("migration_threshold %d, expected 0 to %d sectors", rec.MigrationThreshold, maxMigrationThreshold)
	case rec.DirtyBlocks < 0 || rec.ChunkSizeBytes < 0:
		return fmt.Sprintf("dirty blocks %d, chunk size %d", rec.DirtyBlocks, rec.ChunkSizeBytes)
	}
	for _, setting := range strings.Split(rec.Settings, ",") {
		if setting = strings.TrimSpace(setting); setting != "" && !journalCacheSetting.MatchString(setting) {
			return fmt.Sprintf("cache setting %q, expected KEY=VALUE", setting)
		}
	}
	want := flushSteps(name, rec, rec.ChunkSizeBytes/sectorSize)
	if len(plan.Steps) != len(want) {
		return fmt.Sprintf("%d steps, expected %d for a flush by %s", len(plan.Steps), len(want), rec.Method)
	}
	for i := range plan.Steps {
		step, expect := &plan.Steps[i], &want[i]
		switch {
		case step.Kind != expect.Kind:
			return fmt.Sprintf("step %d is %q, expected %q", i+1, step.Kind, expect.Kind)
		case step.State != StatePending && step.State != StateRunning && step.State != StateDone && step.State != StateFailed:
			return fmt.Sprintf("step %s has state %q, expected pending, running, done or failed", step.Kind, step.State)
		case step.Dmsetup != expect.Dmsetup:
			return fmt.Sprintf("step %s: run by the wrong tool", step.Kind)
		case step.DirtyBlocks < 0:
			return fmt.Sprintf("step %s: dirty blocks %d", step.Kind, step.DirtyBlocks)
		}
		if problem := checkFlushArgs(step, expect); problem != "" {
			return fmt.Sprintf("step %s: %s", step.Kind, problem)
		}
	}
	return ""
}

// checkFlushArgs checks the argv of a step against the one its record
// implies; a raise may name any threshold up to the cap.
func checkFlushArgs(step, expect *Step) string {
	if step.Kind == StepRaiseThreshold && len(step.Args) == len(expect.Args) &&
		slices.Equal(step.Args[:len(step.Args)-1], expect.Args[:len(expect.Args)-1]) {
		value := step.Args[len(step.Args)-1]
		if n, err := strconv.ParseInt(value, 10, 64); journalSectors.MatchString(value) && err == nil && n <= maxMigrationThreshold {
			return ""
		}
		return fmt.Sprintf("migration_threshold %q, expected 0 to %d sectors", value, maxMigrationThreshold)
	}
	if !slices.Equal(step.Args, expect.Args) {
		return fmt.Sprintf("arguments %q, expected %q", step.Args, expect.Args)
	}
	return ""
}

// checkFlushRecordShape refuses a flush record whose fields are null or of
// another JSON type: decoding would read them as zero, and a restore of
// migration_threshold 0 or of no settings must be what the journal says,
// not what a damaged field leaves. It returns the problem, "" for none.
func checkFlushRecordShape(data []byte) string {
	var doc struct {
		Flush map[string]json.RawMessage `json:"flush"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Flush == nil {
		return "no flush record"
	}
	kinds := map[string]byte{"method": '"', "policy": '"', "settings": '"', "until": '"',
		"migration_threshold": '0', "dirty_blocks": '0', "chunk_size_bytes": '0'}
	for _, required := range []string{"method", "policy", "migration_threshold", "dirty_blocks", "chunk_size_bytes"} {
		if _, ok := doc.Flush[required]; !ok {
			return "flush record without " + required
		}
	}
	for field, raw := range doc.Flush {
		want, known := kinds[field]
		if !known {
			continue // DisallowUnknownFields has refused it already
		}
		first := byte(0)
		if len(raw) > 0 {
			first = raw[0]
		}
		isNumber := first == '-' || (first >= '0' && first <= '9')
		if (want == '"' && first != '"') || (want == '0' && !isNumber) {
			return fmt.Sprintf("flush record field %s is %s, expected a %s", field, truncate(string(raw), 20),
				map[byte]string{'"': "string", '0': "number"}[want])
		}
	}
	return ""
}
