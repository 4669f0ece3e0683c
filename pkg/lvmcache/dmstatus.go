package lvmcache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DMName is the device-mapper name lvm2 gives the LV: VG and LV joined by
// a hyphen, each hyphen inside them doubled ("my-vg/data" is "my--vg-data").
func (n Name) DMName() string { return fileStem(n) }

// DMCacheStatus is the status line of a dm-cache target, as the kernel
// reports it (`dmsetup status`, Documentation/admin-guide/device-mapper/
// cache.rst): the counters are exactly the kernel's. Sizes are in 512-byte
// sectors, counts in cache blocks.
type DMCacheStatus struct {
	MetadataBlockSectors int64
	MetadataUsed         int64
	MetadataTotal        int64
	BlockSectors         int64
	UsedBlocks           int64
	TotalBlocks          int64
	ReadHits             int64
	ReadMisses           int64
	WriteHits            int64
	WriteMisses          int64
	Demotions            int64
	Promotions           int64
	DirtyBlocks          int64
	// Features are the target's feature arguments: the mode (writeback,
	// writethrough, passthrough), metadata2, no_discard_passdown.
	Features []string
	// CoreArgs are the core arguments as the kernel reports them, at least
	// migration_threshold.
	CoreArgs map[string]string
	// Policy is the policy the kernel runs (smq, cleaner, mq).
	Policy     string
	PolicyArgs map[string]string
	// MetadataMode is rw, or ro once the metadata could not be written.
	MetadataMode string
	NeedsCheck   bool
}

// Mode is the cache mode among the features: writeback, writethrough or
// passthrough; "" when none is named.
func (s *DMCacheStatus) Mode() string {
	for _, f := range s.Features {
		switch f {
		case "writeback", "writethrough", "passthrough":
			return f
		}
	}
	return ""
}

// MigrationThreshold is the runtime migration_threshold in sectors: how
// much may be migrating between the cache and the origin at once.
func (s *DMCacheStatus) MigrationThreshold() (int64, error) {
	v, ok := s.CoreArgs["migration_threshold"]
	if !ok {
		return 0, errors.New("dm-cache status: no migration_threshold among the core arguments")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("dm-cache status: migration_threshold %q: expected a number of sectors", v)
	}
	return n, nil
}

// ErrCacheFailed is wrapped by the error of a dm-cache target that reports
// Fail (or Error): it has no counters, and writes nothing back.
var ErrCacheFailed = errors.New("dm-cache reports the cache failed")

// maxStatusFields bounds what ParseDMCacheStatus reads of one line: a
// status has some 30 fields; a policy with many arguments a few more.
const maxStatusFields = 256

// ParseDMCacheStatus reads the output of `dmsetup status DEVICE` for a
// cached LV: one line "START LENGTH cache FIELDS...", where a device of
// several segments prints one line each and the first cache target counts.
// A target that reports Fail or Error wraps ErrCacheFailed.
func ParseDMCacheStatus(out string) (*DMCacheStatus, error) {
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[2] != "cache" {
			continue
		}
		if len(fields) > maxStatusFields {
			return nil, fmt.Errorf("dm-cache status: %d fields, expected at most %d", len(fields), maxStatusFields)
		}
		return parseCacheFields(fields[3:])
	}
	return nil, errors.New("dm-cache status: no cache target in the device's status")
}

// statusReader takes the fields of a status line one after the other and
// remembers the first problem.
type statusReader struct {
	fields []string
	err    error
}

func (r *statusReader) next(what string) string {
	if r.err != nil {
		return ""
	}
	if len(r.fields) == 0 {
		r.err = fmt.Errorf("dm-cache status: ends before %s", what)
		return ""
	}
	f := r.fields[0]
	r.fields = r.fields[1:]
	return f
}

func (r *statusReader) number(what string) int64 {
	f := r.next(what)
	if r.err != nil {
		return 0
	}
	n, err := strconv.ParseInt(f, 10, 64)
	if err != nil || n < 0 {
		r.err = fmt.Errorf("dm-cache status: %s %q: expected a count", what, truncate(f, 40))
	}
	return n
}

// fraction reads "USED/TOTAL".
func (r *statusReader) fraction(what string) (used, total int64) {
	f := r.next(what)
	if r.err != nil {
		return 0, 0
	}
	u, t, ok := strings.Cut(f, "/")
	a, errA := strconv.ParseInt(u, 10, 64)
	b, errB := strconv.ParseInt(t, 10, 64)
	if !ok || errA != nil || errB != nil || a < 0 || b < 0 {
		r.err = fmt.Errorf("dm-cache status: %s %q: expected USED/TOTAL", what, truncate(f, 40))
	}
	return a, b
}

// list reads a count, then that many fields (what a feature, core or
// policy argument list is).
func (r *statusReader) list(what string) []string {
	n := r.number("number of " + what)
	if r.err != nil {
		return nil
	}
	if n > int64(len(r.fields)) {
		r.err = fmt.Errorf("dm-cache status: %d %s announced, %d fields left", n, what, len(r.fields))
		return nil
	}
	list := r.fields[:n]
	r.fields = r.fields[n:]
	return list
}

// pairs reads a list of KEY VALUE arguments.
func (r *statusReader) pairs(what string) map[string]string {
	list := r.list(what)
	if r.err == nil && len(list)%2 != 0 {
		r.err = fmt.Errorf("dm-cache status: %d %s, expected key value pairs", len(list), what)
	}
	m := map[string]string{}
	for i := 0; r.err == nil && i+1 < len(list); i += 2 {
		m[list[i]] = list[i+1]
	}
	return m
}

func parseCacheFields(fields []string) (*DMCacheStatus, error) {
	if len(fields) > 0 && (fields[0] == "Fail" || fields[0] == "Error") {
		return nil, ErrCacheFailed
	}
	r := &statusReader{fields: fields}
	s := &DMCacheStatus{}
	s.MetadataBlockSectors = r.number("metadata block size")
	s.MetadataUsed, s.MetadataTotal = r.fraction("metadata blocks")
	s.BlockSectors = r.number("cache block size")
	s.UsedBlocks, s.TotalBlocks = r.fraction("cache blocks")
	for _, c := range []struct {
		dst  *int64
		what string
	}{{&s.ReadHits, "read hits"}, {&s.ReadMisses, "read misses"}, {&s.WriteHits, "write hits"}, {&s.WriteMisses, "write misses"},
		{&s.Demotions, "demotions"}, {&s.Promotions, "promotions"}, {&s.DirtyBlocks, "dirty blocks"}} {
		*c.dst = r.number(c.what)
	}
	s.Features = append([]string(nil), r.list("features")...)
	s.CoreArgs = r.pairs("core arguments")
	s.Policy = r.next("policy name")
	s.PolicyArgs = r.pairs("policy arguments")
	s.MetadataMode = r.next("metadata mode")
	if r.err != nil {
		return nil, r.err
	}
	if s.MetadataMode != "rw" && s.MetadataMode != "ro" {
		return nil, fmt.Errorf("dm-cache status: metadata mode %q: expected rw or ro", truncate(s.MetadataMode, 40))
	}
	// Kernels since 4.x add needs_check or "-"; older ones end here.
	if len(r.fields) > 0 {
		s.NeedsCheck = r.fields[0] == "needs_check"
	}
	if s.BlockSectors == 0 || s.UsedBlocks > s.TotalBlocks || s.DirtyBlocks > s.TotalBlocks {
		return nil, fmt.Errorf("dm-cache status: block size %d sectors, %d/%d used, %d dirty: not a cache's figures", s.BlockSectors, s.UsedBlocks, s.TotalBlocks, s.DirtyBlocks)
	}
	return s, nil
}

// DMCacheStatus asks the kernel for the status of the cached LV name.
func (r *Runner) DMCacheStatus(ctx context.Context, name Name) (*DMCacheStatus, error) {
	out, err := r.RunDmsetup(ctx, "status", name.DMName())
	if err != nil {
		return nil, fmt.Errorf("dmsetup status %s: %w", name.DMName(), err)
	}
	s, err := ParseDMCacheStatus(string(out))
	if err != nil {
		return nil, fmt.Errorf("dmsetup status %s: %w", name.DMName(), err)
	}
	return s, nil
}
