package lvmcache

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

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

// Version asks lvm2 for its release.
func (r *Runner) Version(ctx context.Context) (Version, error) {
	out, err := r.Run(ctx, "version")
	if err != nil {
		return Version{}, fmt.Errorf("lvm version: %w", err)
	}
	return ParseVersion(string(out))
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

// spareExtents is the size of lvm2's pool metadata spare LV (lvol0_pmspare)
// in extents, 0 when the VG has none.
func (vg *VG) spareExtents() int64 {
	var extents int64
	for name, lv := range vg.LVs {
		if strings.HasSuffix(name, "_pmspare") && vg.ExtentSizeBytes > 0 {
			extents = max(extents, lv.SizeBytes/vg.ExtentSizeBytes)
		}
	}
	return extents
}

// cacheMetadataBytes estimates the cache pool metadata lvm2 allocates for
// a cache of dataBytes with its default chunk size, after lvm2's rule: 4 MiB
// of transaction overhead plus 44 bytes (mapping, hint and its overhead)
// per chunk, with the default chunk size of 64 KiB grown, when that makes
// more than a million chunks, to the smallest multiple of 32 KiB that does
// not (update_cache_pool_params; lvm2 counts in sectors).
func cacheMetadataBytes(dataBytes int64) int64 {
	const maxChunks = 1_000_000
	const minChunkSectors = (32 << 10) / 512
	dataSectors := ceilDiv(dataBytes, 512)
	chunk := int64(64 << 10)
	if minChunk := ceilDiv(ceilDiv(dataSectors, maxChunks), minChunkSectors) * minChunkSectors * 512; minChunk > chunk {
		chunk = minChunk
	}
	perChunk := int64(16 + 20 + 8)
	sectors := ceilDiv((dataBytes/chunk)*perChunk, 512) + 4096*2
	return max(sectors*512, 2<<20)
}

func ceilDiv(a, b int64) int64 {
	if b <= 0 {
		return a
	}
	return (a + b - 1) / b
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

// growthPVs are the PVs an LV may grow on: the VG's allocatable PVs, except
// those that hold only its cache, or with recache every PV of its cache,
// and those that hold the cache of another LV of the VG (and none of this
// LV): that cache's own recache needs the room. It returns nil (lvresize's
// own choice) when that is every PV, and the free extents on them.
func growthPVs(vg *VG, lv *LV, recache bool) ([]string, int64) {
	otherCaches := map[string]bool{}
	for _, other := range vg.LVs {
		if other != lv && other.Cache != nil {
			for _, pv := range other.Cache.PVs {
				otherCaches[pv] = true
			}
		}
	}
	var pvs []string
	var free int64
	for _, pv := range vg.PVs {
		if !pv.Allocatable {
			continue
		}
		if contains(lv.Cache.PVs, pv.Name) && (recache || !contains(lv.PVs, pv.Name)) {
			continue
		}
		if otherCaches[pv.Name] && !contains(lv.PVs, pv.Name) && !contains(lv.Cache.PVs, pv.Name) {
			continue
		}
		pvs = append(pvs, pv.Name)
		free += pv.FreeBytes / vg.ExtentSizeBytes
	}
	if len(pvs) == len(vg.PVs) {
		return nil, free
	}
	sort.Strings(pvs)
	return pvs, free
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

func (m *Manager) now() time.Time {
	if m.Clock != nil {
		return m.Clock().UTC()
	}
	return time.Now().UTC()
}
