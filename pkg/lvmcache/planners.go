package lvmcache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// The planners: each checks a request against the LV as lvm2 reports it
// and returns the Plan that carries it out, or says why it cannot be.

// CreateRequest asks for a cache on an LV.
type CreateRequest struct {
	LV        Name
	SizeBytes int64
	PVs       []string
	// Mode is writeback (the default) or writethrough.
	Mode string
	// CacheName is the name of the cache pool: LV_cache when empty.
	CacheName string
}

// ResizeRequest asks for a cached LV to grow.
type ResizeRequest struct {
	LV       Name
	Size     Size
	Strategy string // auto (the default), online or recache
}

// PlanCreate checks that req can be carried out (the LV exists and is not
// cached, the PVs belong to its VG and have room for the cache) and returns
// the plan: the recipe's lvcreate --type cache.
func (m *Manager) PlanCreate(ctx context.Context, req CreateRequest) (*Plan, error) {
	fail := func(err error) (*Plan, error) { return nil, fmt.Errorf("lvm cache create %s: %w", req.LV, err) }
	mode := req.Mode
	if mode == "" {
		mode = "writeback"
	}
	if mode != "writeback" && mode != "writethrough" {
		return fail(fmt.Errorf("cache mode %q: expected writeback or writethrough", mode))
	}
	cacheName := req.CacheName
	if cacheName == "" {
		cacheName = req.LV.LV + "_cache"
	}
	if !ValidLVName(cacheName) {
		return fail(fmt.Errorf("cache name %q: expected an LV name (letters, digits, + _ . -)", cacheName))
	}
	if req.SizeBytes <= 0 {
		return fail(fmt.Errorf("cache size must be greater than zero"))
	}
	if len(req.PVs) == 0 {
		return fail(fmt.Errorf("no cache PV: give the fast PV with CreateRequest.PVs"))
	}
	if err := m.checkLVFree(req.LV); err != nil {
		return fail(err)
	}
	vg, lv, err := m.inspectLV(ctx, req.LV)
	if err != nil {
		return fail(err)
	}
	if lv.Cached() {
		return fail(fmt.Errorf("already cached by %s (%s, %s); resize or remove that cache instead", lv.Cache.Pool, lv.Cache.Mode, FormatBytes(lv.Cache.SizeBytes)))
	}
	if strings.Contains(lv.Layout, "cache") || strings.Contains(lv.Layout, "pool") || lv.Segtype == "writecache" {
		return fail(fmt.Errorf("is a %s LV (%s); expected a plain LV to cache", lv.Segtype, lv.Layout))
	}
	for _, taken := range []string{cacheName, cacheName + "_cpool"} {
		if _, exists := vg.LVs[taken]; exists {
			return fail(fmt.Errorf("cache name %q: an LV %s/%s already exists; choose another with CreateRequest.CacheName", cacheName, vg.Name, taken))
		}
	}
	var pvs []string
	var free int64
	for _, path := range req.PVs {
		pv, ok := vg.PV(path)
		if !ok {
			return fail(fmt.Errorf("PV %s is not in volume group %s (its PVs: %s)", path, vg.Name, strings.Join(vg.PVNames(), ", ")))
		}
		if contains(pvs, pv.Name) {
			continue
		}
		if !pv.Allocatable {
			return fail(fmt.Errorf("PV %s is not allocatable (pvchange -x y %s allows it)", pv.Name, pv.Name))
		}
		// A cache on the PV the LV already lives on caches the slow disks
		// with themselves, and a later recache could not grow the LV there.
		if contains(lv.PVs, pv.Name) {
			return fail(fmt.Errorf("PV %s holds data of %s itself; expected a separate fast PV for the cache (%s is on %s)", pv.Name, req.LV, req.LV, strings.Join(lv.PVs, ", ")))
		}
		pvs = append(pvs, pv.Name)
		free += pv.FreeBytes / vg.ExtentSizeBytes
	}
	dataExtents := ceilDiv(req.SizeBytes, vg.ExtentSizeBytes)
	metaExtents := ceilDiv(cacheMetadataBytes(dataExtents*vg.ExtentSizeBytes), vg.ExtentSizeBytes)
	// lvm2 keeps a spare metadata LV as large as the largest pool metadata
	// of the VG, and creates or grows it on the same PVs as the new pool.
	spareExtents := max(metaExtents-vg.spareExtents(), 0)
	if need := dataExtents + metaExtents + spareExtents; need > free {
		what := "data and metadata"
		if spareExtents > 0 {
			what = "data, metadata and lvm2's spare metadata"
		}
		return fail(fmt.Errorf("not enough free space on %s for a %s cache: it needs %d extents of %s (%s), %d are free",
			strings.Join(pvs, ", "), FormatBytes(req.SizeBytes), need, FormatBytes(vg.ExtentSizeBytes), what, free))
	}
	cache := &Cache{Name: cacheName, Mode: mode, SizeBytes: req.SizeBytes, PVs: pvs}
	now := m.now()
	plan := &Plan{
		Version: 1, Op: OpCreate, LV: req.LV.String(), Lvm: m.Runner.Executable(),
		OriginalSizeBytes: lv.SizeBytes, Cache: cache, Created: now, Updated: now,
		Steps: []Step{{Kind: StepCreate, Args: createCacheArgs(req.LV, cache, false), State: StatePending}},
		Notes: []string{fmt.Sprintf("attach a %s %s cache named %s on %s to %s (%s)",
			FormatBytes(req.SizeBytes), mode, cacheName, strings.Join(pvs, ", "), req.LV, FormatBytes(lv.SizeBytes))},
	}
	return plan, nil
}

// PlanResize checks that req can be carried out (the LV exists and is
// cached, it grows, its VG has the room outside the cache PVs, lvm2
// supports the strategy) and returns the plan. A plan with no steps means
// the LV already has that size.
func (m *Manager) PlanResize(ctx context.Context, req ResizeRequest) (*Plan, error) {
	fail := func(err error) (*Plan, error) { return nil, fmt.Errorf("lvm cache resize %s: %w", req.LV, err) }
	if err := m.checkLVFree(req.LV); err != nil {
		return fail(err)
	}
	strategy := req.Strategy
	if strategy == "" {
		strategy = StrategyAuto
	}
	if strategy != StrategyAuto && strategy != StrategyOnline && strategy != StrategyRecache {
		return fail(fmt.Errorf("strategy %q: expected auto, online or recache", strategy))
	}
	// Only online resizing depends on the lvm2 release.
	var version Version
	if strategy != StrategyRecache {
		v, err := m.Runner.Version(ctx)
		if err != nil {
			return fail(err)
		}
		version = v
	}
	switch {
	case strategy == StrategyOnline && !version.SupportsOnlineResize():
		return fail(fmt.Errorf("lvm2 %s cannot resize a cached LV online (that needs %s or newer); use StrategyRecache", version, OnlineResizeVersion))
	case strategy == StrategyAuto && version.SupportsOnlineResize():
		strategy = StrategyOnline
	case strategy == StrategyAuto:
		strategy = StrategyRecache
	}
	vg, lv, err := m.inspectLV(ctx, req.LV)
	if err != nil {
		return fail(err)
	}
	if !lv.Cached() {
		return fail(fmt.Errorf("is not cached; resize it with lvresize, or cache it with opsctl lvm cache create"))
	}
	// A recache re-creates the cache with lvcreate --type cache: a linear
	// cache pool. A cache of another shape (an lvm raid1 of two SSDs) would
	// come back without its redundancy, or not fit.
	if why := lv.Cache.uncacheLoses(); strategy == StrategyRecache && why != "" {
		return fail(fmt.Errorf("%s", why))
	}
	if strategy == StrategyRecache && lv.Cache.NotRecreatable != "" {
		hint := "resize it with StrategyOnline (lvm2 " + OnlineResizeVersion.String() + " or newer)"
		if version != (Version{}) && !version.SupportsOnlineResize() {
			hint = "lvm2 " + version.String() + " cannot resize it online; uncache, lvresize and re-create that cache by hand"
		}
		return fail(fmt.Errorf("the cache %s cannot be re-created as it is: %s, and lvcreate --type cache makes a linear cache pool; %s", lv.Cache.Pool, lv.Cache.NotRecreatable, hint))
	}
	target := req.Size.Bytes
	if req.Size.Relative {
		target = lv.SizeBytes + req.Size.Bytes
	}
	// Beyond int64 the sums below would wrap into a negative "shrink".
	if target < req.Size.Bytes || target > math.MaxInt64-vg.ExtentSizeBytes {
		return fail(fmt.Errorf("size %s: too large", req.Size))
	}
	// lvm2 rounds up to whole extents; so does the plan, so that a resumed
	// resize can tell whether lvresize already ran.
	target = ceilDiv(target, vg.ExtentSizeBytes) * vg.ExtentSizeBytes
	now := m.now()
	plan := &Plan{
		Version: 1, Op: OpResize, LV: req.LV.String(), Strategy: strategy, Lvm: m.Runner.Executable(),
		OriginalSizeBytes: lv.SizeBytes, TargetSizeBytes: target,
		Cache: recordCache(lv.Cache), Created: now, Updated: now,
	}
	if target < lv.SizeBytes {
		return fail(fmt.Errorf("size %s is smaller than the LV (%s): shrinking is not supported, it would destroy the data at the end", FormatBytes(target), FormatBytes(lv.SizeBytes)))
	}
	if version != (Version{}) {
		plan.LVMVersion = version.String()
	}
	if target == lv.SizeBytes {
		plan.Notes = append(plan.Notes, fmt.Sprintf("%s is already %s: nothing to do", req.LV, FormatBytes(target)))
		return plan, nil
	}
	// The LV grows on PVs that do not hold only the cache: after an uncache
	// lvm2 would otherwise happily extend the origin onto the freed fast
	// PV, and the cache would no longer fit. For a recache that holds for
	// every cache PV, also one that holds part of the origin: the uncache
	// frees the cache's extents there before lvresize runs.
	growPVs, free := growthPVs(vg, lv, strategy == StrategyRecache)
	// An lvm raid1 origin grows on each of its images.
	needed := (target - lv.SizeBytes) / vg.ExtentSizeBytes * max(lv.Copies, 1)
	if needed > free {
		return fail(fmt.Errorf("not enough free space to grow by %s: it needs %d extents of %s on PVs other than the cache's (%s), %d are free",
			FormatBytes(target-lv.SizeBytes), needed, FormatBytes(vg.ExtentSizeBytes), strings.Join(lv.Cache.PVs, ", "), free))
	}
	resizeArgs := append([]string{"lvresize", "--size", lvmSize(target), req.LV.String()}, growPVs...)
	grow := fmt.Sprintf("grow %s from %s to %s", req.LV, FormatBytes(lv.SizeBytes), FormatBytes(target))
	if strategy == StrategyOnline {
		plan.Steps = []Step{{Kind: StepResize, Args: resizeArgs, State: StatePending}}
		plan.Notes = append(plan.Notes, grow+" in place, cache attached (lvm2 "+version.String()+")")
		return plan, nil
	}
	plan.Steps = []Step{
		{Kind: StepUncache, Args: []string{"lvconvert", "--uncache", req.LV.String()}, State: StatePending},
		{Kind: StepResize, Args: resizeArgs, State: StatePending},
		{Kind: StepRecache, Args: createCacheArgs(req.LV, plan.Cache, true), State: StatePending},
	}
	plan.Notes = append(plan.Notes,
		fmt.Sprintf("flush %d dirty blocks and detach the cache %s (%s, %s, %s, chunk %s, on %s)", lv.Cache.DirtyBlocks, lv.Cache.Pool,
			FormatBytes(lv.Cache.SizeBytes), lv.Cache.Mode, lv.Cache.Policy, FormatBytes(lv.Cache.ChunkSizeBytes), strings.Join(lv.Cache.PVs, ", ")),
		grow,
		"re-create the same cache",
	)
	return plan, nil
}

// PlanRemove checks that the LV is cached and returns the plan that
// flushes the cache and deletes it, leaving the LV plain.
func (m *Manager) PlanRemove(ctx context.Context, name Name) (*Plan, error) {
	fail := func(err error) (*Plan, error) { return nil, fmt.Errorf("lvm cache remove %s: %w", name, err) }
	if err := m.checkLVFree(name); err != nil {
		return fail(err)
	}
	_, lv, err := m.inspectLV(ctx, name)
	if err != nil {
		return fail(err)
	}
	if !lv.Cached() {
		return fail(fmt.Errorf("is not cached: nothing to remove"))
	}
	if why := lv.Cache.uncacheLoses(); why != "" {
		return fail(fmt.Errorf("%s", why))
	}
	now := m.now()
	return &Plan{
		Version: 1, Op: OpRemove, LV: name.String(), Lvm: m.Runner.Executable(), OriginalSizeBytes: lv.SizeBytes,
		Cache: recordCache(lv.Cache), Created: now, Updated: now,
		Steps: []Step{{Kind: StepUncache, Args: []string{"lvconvert", "--uncache", name.String()}, State: StatePending}},
		Notes: []string{fmt.Sprintf("flush %d dirty blocks of %s, detach and delete its cache %s (%s on %s)",
			lv.Cache.DirtyBlocks, name, lv.Cache.Pool, FormatBytes(lv.Cache.SizeBytes), strings.Join(lv.Cache.PVs, ", "))},
	}, nil
}

// PlanFlush checks that the cache of req.LV can be flushed (it is an
// active writeback cache, not failed, its policy one a flush puts back) and
// returns the plan: the change of its policy or migration_threshold, the
// write-back, and the restore of what it found. A plan with no steps means
// there is nothing to flush (a writethrough cache, no dirty block): its
// note says why.
func (m *Manager) PlanFlush(ctx context.Context, req FlushRequest) (*Plan, error) {
	fail := func(err error) (*Plan, error) { return nil, fmt.Errorf("lvm cache flush %s: %w", req.LV, err) }
	method := req.Method
	if method == "" {
		method = FlushCleaner
	}
	if method != FlushCleaner && method != FlushThreshold {
		return fail(fmt.Errorf("method %q: expected %s or %s", method, FlushCleaner, FlushThreshold))
	}
	if err := m.checkLVFree(req.LV); err != nil {
		return fail(err)
	}
	_, lv, err := m.inspectLV(ctx, req.LV)
	if err != nil {
		return fail(err)
	}
	now := m.now()
	plan := &Plan{Version: 1, Op: OpFlush, LV: req.LV.String(), Lvm: m.Runner.Executable(), Dmsetup: m.Runner.DmsetupExecutable(),
		OriginalSizeBytes: lv.SizeBytes, Created: now, Updated: now}
	if err := flushable(lv); err != nil {
		return fail(err)
	}
	if lv.Cache.Mode != "writeback" {
		plan.Notes = []string{fmt.Sprintf("%s has a %s cache, which holds no dirty block: nothing to flush", req.LV, lv.Cache.Mode)}
		return plan, nil
	}
	st, err := m.Runner.DMCacheStatus(ctx, req.LV)
	if errors.Is(err, ErrCacheFailed) {
		return fail(fmt.Errorf("dm-cache reports the cache %s failed: it writes nothing back; check the fast PV and the cache (lvmcache(7))", lv.Cache.Pool))
	}
	if err != nil {
		return fail(err)
	}
	if st.Policy != lv.Cache.Policy {
		return fail(fmt.Errorf("the kernel runs the cache policy %s, lvm's metadata says %s: reload the LV (lvchange --refresh %s) before a flush", st.Policy, lv.Cache.Policy, req.LV))
	}
	threshold, err := st.MigrationThreshold()
	if err != nil {
		return fail(err)
	}
	if st.DirtyBlocks == 0 {
		plan.Notes = []string{fmt.Sprintf("%s has no dirty block: nothing to flush", req.LV)}
		return plan, nil
	}
	rec := &FlushRecord{Method: method, Policy: lv.Cache.Policy, Settings: lv.Cache.Settings, MigrationThreshold: threshold,
		DirtyBlocks: st.DirtyBlocks, ChunkSizeBytes: lv.Cache.ChunkSizeBytes}
	if !req.Until.IsZero() {
		until := req.Until.UTC()
		rec.Until = &until
	}
	plan.Flush = rec
	plan.Steps = flushSteps(req.LV, rec, rec.ChunkSizeBytes/sectorSize)
	plan.Notes = flushNotes(req.LV, rec)
	return plan, nil
}

// flushable says why the cache of lv cannot be flushed, nil when it can.
func flushable(lv *LV) error {
	switch {
	case !lv.Cached():
		return errors.New("is not cached: nothing to flush")
	case lv.Cache.Health != "" && lv.Cache.Mode == "writeback":
		return fmt.Errorf("the writeback cache %s is %s: dm-cache cannot write its dirty blocks back; check the fast PV and the cache (lvmcache(7))", lv.Cache.Pool, lv.Cache.Health)
	case lv.Cache.Mode != "writeback":
		return nil
	case !lv.Active:
		return fmt.Errorf("is not active: dm-cache writes back only for an active LV (lvchange -ay %s)", lv.Name)
	case lv.Cache.Policy == "cleaner":
		return fmt.Errorf("its cache policy is cleaner already (left by an interrupted lvconvert --uncache?), not one a flush puts back; set the policy it should have first (lvchange --cachepolicy smq %s)", lv.Name)
	}
	return nil
}

// flushNotes explain a flush plan before it runs.
func flushNotes(name Name, rec *FlushRecord) []string {
	dirty := fmt.Sprintf("write back %d dirty blocks (%s) of %s, which stays cached and online", rec.DirtyBlocks, FormatBytes(rec.DirtyBlocks*rec.ChunkSizeBytes), name)
	how := "with the cleaner policy, which promotes no block meanwhile"
	if rec.Method == FlushThreshold {
		how = "by raising the runtime migration_threshold in steps"
	}
	settings := rec.Settings
	if settings == "" {
		settings = "none"
	}
	notes := []string{dirty + ", " + how,
		fmt.Sprintf("then put back policy %s (settings: %s) and the runtime migration_threshold %d (the last command runs only if it is not that already)", rec.Policy, settings, rec.MigrationThreshold)}
	if rec.Until != nil {
		notes = append(notes, "stop at "+rec.Until.Local().Format(time.DateTime)+", whatever is left")
	}
	return notes
}
