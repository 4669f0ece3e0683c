package lvmcache

import (
	"sort"
	"strings"
)

// What a plan needs room for: the extents of a new cache pool with its
// metadata and lvm2's spare, and the PVs an LV may grow on.

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
