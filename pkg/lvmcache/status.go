package lvmcache

import (
	"context"
	"fmt"
	"sort"
)

// Status is what `opsctl lvm cache status` reports for one LV. The JSON
// field names and order are part of opsctl's interface.
type Status struct {
	LV              string   `json:"lv"`
	Cached          bool     `json:"cached"`
	Mode            string   `json:"mode"`
	Policy          string   `json:"policy"`
	ChunkSizeBytes  int64    `json:"chunk_size_bytes"`
	OriginSizeBytes int64    `json:"origin_size_bytes"`
	CacheSizeBytes  int64    `json:"cache_size_bytes"`
	TotalBlocks     int64    `json:"total_blocks"`
	UsedBlocks      int64    `json:"used_blocks"`
	DirtyBlocks     int64    `json:"dirty_blocks"`
	ReadHits        int64    `json:"read_hits"`
	ReadMisses      int64    `json:"read_misses"`
	WriteHits       int64    `json:"write_hits"`
	WriteMisses     int64    `json:"write_misses"`
	CachePVs        []string `json:"cache_pvs"`
	// Active tells an LV with a device in the kernel, whose dm-cache has
	// counters (see Counters).
	Active bool `json:"-"`
}

// StatusOf describes lv. An LV without a cache has Cached false, its origin
// size and zeros elsewhere.
func StatusOf(lv *LV) Status {
	s := Status{LV: lv.Name.String(), OriginSizeBytes: lv.SizeBytes, CachePVs: []string{}, Active: lv.Active}
	if c := lv.Cache; c != nil {
		s.Cached = true
		s.Mode, s.Policy = c.Mode, c.Policy
		s.ChunkSizeBytes = c.ChunkSizeBytes
		s.CacheSizeBytes = c.SizeBytes
		s.TotalBlocks, s.UsedBlocks, s.DirtyBlocks = c.TotalBlocks, c.UsedBlocks, c.DirtyBlocks
		s.ReadHits, s.ReadMisses, s.WriteHits, s.WriteMisses = c.ReadHits, c.ReadMisses, c.WriteHits, c.WriteMisses
		s.CachePVs = append(s.CachePVs, c.PVs...)
	}
	return s
}

// Status reports the cache of one LV.
func (m *Manager) Status(ctx context.Context, name Name) (Status, error) {
	_, lv, err := m.inspectLV(ctx, name)
	if err != nil {
		return Status{}, fmt.Errorf("lvm cache status %s: %w", name, err)
	}
	return StatusOf(lv), nil
}

// StatusAll reports every cached LV of every VG, sorted by name. An
// exported VG (vgexport) is skipped: vgs lists it, but lvs refuses it, and
// none of its LVs can be active.
func (m *Manager) StatusAll(ctx context.Context) ([]Status, error) {
	report, err := m.Runner.Report(ctx, "vgs", "-o", "vg_name,vg_attr")
	if err != nil {
		return nil, fmt.Errorf("lvm cache status: vgs: %w", err)
	}
	var vgNames []string
	for _, row := range report["vg"] {
		// vg_attr "wzx-n-": the third letter is "x" when exported.
		if attr := row["vg_attr"]; len(attr) > 2 && attr[2] == 'x' {
			m.logger().Debug("skipping exported volume group", "vg", row["vg_name"])
			continue
		}
		vgNames = append(vgNames, row["vg_name"])
	}
	sort.Strings(vgNames)
	all := []Status{}
	for _, vgName := range vgNames {
		vg, err := m.Runner.InspectVG(ctx, vgName)
		if err != nil {
			return nil, fmt.Errorf("lvm cache status: %w", err)
		}
		all = append(all, cachedOf(vg)...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].LV < all[j].LV })
	return all, nil
}

// StatusOfVG reports every cached LV of the VG vgName, sorted by name.
func (m *Manager) StatusOfVG(ctx context.Context, vgName string) ([]Status, error) {
	vg, err := m.Runner.InspectVG(ctx, vgName)
	if err != nil {
		return nil, fmt.Errorf("lvm cache status %s: %w", vgName, err)
	}
	all := cachedOf(vg)
	sort.Slice(all, func(i, j int) bool { return all[i].LV < all[j].LV })
	return all, nil
}

// cachedOf is the status of every cached LV of vg.
func cachedOf(vg *VG) []Status {
	all := []Status{}
	for _, lv := range vg.LVs {
		if lv.Cached() {
			all = append(all, StatusOf(lv))
		}
	}
	return all
}
