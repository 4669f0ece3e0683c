package lvmcache

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Lines of `dmsetup status` of a cached LV, as Debian's kernel 6.1 printed
// them in the VM test: fresh, and with 512 dirty blocks, writeback frozen.
const (
	dmStatusFresh  = "0 524288 cache 8 15/2048 128 0/3072 0 0 0 0 0 0 0 2 metadata2 writeback 2 migration_threshold 2048 smq 0 rw - \n"
	dmStatusDirty  = "0 524288 cache 8 15/2048 128 512/3072 0 0 0 0 0 512 512 2 metadata2 writeback 2 migration_threshold 0 smq 0 rw - \n"
	dmStatusFlush  = "0 524288 cache 8 21/2048 128 512/3072 2421 3979 1024 7 3 11 440 2 metadata2 writethrough 2 migration_threshold 2048 cleaner 0 rw - \n"
	dmStatusOldMQ  = "0 65536 cache 8 110/4096 128 12/256 5 6 7 8 9 10 11 1 writeback 2 migration_threshold 2048 mq 10 random_threshold 4 sequential_threshold 512 discard_promote_adjustment 1 read_promote_adjustment 4 write_promote_adjustment 8 rw\n"
	dmStatusFailed = "0 524288 cache Fail\n"
)

func TestDMCacheStatusReadsTheKernelsCounters(t *testing.T) {
	s, err := ParseDMCacheStatus(dmStatusFlush)
	if err != nil {
		t.Fatal(err)
	}
	got := []int64{s.MetadataBlockSectors, s.MetadataUsed, s.MetadataTotal, s.BlockSectors, s.UsedBlocks, s.TotalBlocks,
		s.ReadHits, s.ReadMisses, s.WriteHits, s.WriteMisses, s.Demotions, s.Promotions, s.DirtyBlocks}
	if want := []int64{8, 21, 2048, 128, 512, 3072, 2421, 3979, 1024, 7, 3, 11, 440}; !slices.Equal(got, want) {
		t.Errorf("counters %v, want %v", got, want)
	}
	threshold, err := s.MigrationThreshold()
	if err != nil || threshold != 2048 || s.Policy != "cleaner" || s.Mode() != "writethrough" || s.MetadataMode != "rw" || s.NeedsCheck ||
		!slices.Equal(s.Features, []string{"metadata2", "writethrough"}) {
		t.Errorf("status %+v, threshold %d %v", s, threshold, err)
	}
	if s, err := ParseDMCacheStatus(dmStatusDirty); err != nil || s.DirtyBlocks != 512 || s.Promotions != 512 || s.Mode() != "writeback" {
		t.Errorf("dirty: %+v %v", s, err)
	} else if threshold, _ := s.MigrationThreshold(); threshold != 0 {
		t.Errorf("frozen writeback: migration_threshold %d", threshold)
	}
	s, err = ParseDMCacheStatus("0 1 linear 7:0 0\n" + dmStatusOldMQ)
	if err != nil || s.Policy != "mq" || s.PolicyArgs["write_promote_adjustment"] != "8" || len(s.PolicyArgs) != 5 || s.NeedsCheck {
		t.Errorf("an older kernel's mq: %+v %v", s, err)
	}
	if _, err := ParseDMCacheStatus(dmStatusFailed); !errors.Is(err, ErrCacheFailed) {
		t.Errorf("Fail: %v, want ErrCacheFailed", err)
	}
}

func TestDMCacheStatusRefusesWhatIsNotACachesStatus(t *testing.T) {
	for _, bad := range []string{
		"",
		"0 1048576 linear 7:0 0\n",
		"0 524288 cache 8 15/2048 128 0/3072 0 0 0 0 0 0 0 2 metadata2 writeback 2 migration_threshold 2048 smq 0\n",
		"0 524288 cache 8 15/2048 128 0/3072 0 0 0 0 0 0 0 9 metadata2 writeback 2 migration_threshold 2048 smq 0 rw -\n",
		"0 524288 cache 8 15/2048 128 0/3072 0 0 0 0 0 0 0 2 metadata2 writeback 1 migration_threshold smq 0 rw -\n",
		"0 524288 cache 8 15/2048 128 0-3072 0 0 0 0 0 0 0 2 metadata2 writeback 2 migration_threshold 2048 smq 0 rw -\n",
		"0 524288 cache 8 15/2048 128 4000/3072 0 0 0 0 0 0 0 2 metadata2 writeback 2 migration_threshold 2048 smq 0 rw -\n",
		"0 524288 cache 8 15/2048 128 0/3072 -1 0 0 0 0 0 0 2 metadata2 writeback 2 migration_threshold 2048 smq 0 rw -\n",
		"0 524288 cache 8 15/2048 0 0/3072 0 0 0 0 0 0 0 2 metadata2 writeback 2 migration_threshold 2048 smq 0 rw -\n",
		"0 524288 cache 8 15/2048 128 0/3072 0 0 0 0 0 0 0 2 metadata2 writeback 2 migration_threshold 2048 smq 0 maybe -\n",
		"0 524288 cache" + strings.Repeat(" 1", 300) + "\n",
	} {
		if s, err := ParseDMCacheStatus(bad); err == nil || errors.Is(err, ErrCacheFailed) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %+v, %v; want a one-line error", bad, s, err)
		}
	}
	s, err := ParseDMCacheStatus("0 524288 cache 8 15/2048 128 0/3072 0 0 0 0 0 0 0 1 writeback 2 migration_threshold x smq 0 rw -\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrationThreshold(); err == nil {
		t.Error("migration_threshold x accepted")
	}
}

// formatDMCacheStatus writes s back the way the kernel does.
func formatDMCacheStatus(s *DMCacheStatus) string {
	pairs := func(m map[string]string) string {
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := fmt.Sprint(2 * len(keys))
		for _, k := range keys {
			out += " " + k + " " + m[k]
		}
		return out
	}
	return fmt.Sprintf("0 1 cache %d %d/%d %d %d/%d %d %d %d %d %d %d %d %d %s %s %s %s %s -",
		s.MetadataBlockSectors, s.MetadataUsed, s.MetadataTotal, s.BlockSectors, s.UsedBlocks, s.TotalBlocks,
		s.ReadHits, s.ReadMisses, s.WriteHits, s.WriteMisses, s.Demotions, s.Promotions, s.DirtyBlocks,
		len(s.Features), strings.Join(s.Features, " "), pairs(s.CoreArgs), s.Policy, pairs(s.PolicyArgs), s.MetadataMode)
}

// FuzzParseDMCacheStatus: whatever dmsetup prints, the reader never
// panics, its errors are one line, and what it accepts is a cache's
// figures that read back the same once written out again.
func FuzzParseDMCacheStatus(f *testing.F) {
	for _, seed := range []string{dmStatusFresh, dmStatusDirty, dmStatusFlush, dmStatusOldMQ, dmStatusFailed} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, out string) {
		s, err := ParseDMCacheStatus(out)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of two lines: %q", err)
			}
			return
		}
		if s.UsedBlocks > s.TotalBlocks || s.DirtyBlocks > s.TotalBlocks || s.BlockSectors <= 0 || s.ReadHits < 0 {
			t.Fatalf("accepted %+v", s)
		}
		if strings.ContainsAny(s.Policy, " \n") || (s.MetadataMode != "rw" && s.MetadataMode != "ro") {
			t.Fatalf("accepted policy %q, metadata mode %q", s.Policy, s.MetadataMode)
		}
		again, err := ParseDMCacheStatus(formatDMCacheStatus(s))
		if err != nil {
			t.Fatalf("%+v written back does not read: %v", s, err)
		}
		again.NeedsCheck = s.NeedsCheck
		if fmt.Sprint(again) != fmt.Sprint(s) {
			t.Fatalf("read back %+v, want %+v", again, s)
		}
	})
}
