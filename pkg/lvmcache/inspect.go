package lvmcache

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// lvFields are the columns read for every LV of a VG, hidden ones included
// (-a): enough to describe a cached LV, its cache pool and where they live.
var lvFields = strings.Join([]string{
	"lv_name", "vg_name", "lv_size", "segtype", "lv_layout", "lv_attr",
	"cache_mode", "cache_policy", "cache_settings", "chunk_size",
	"cache_total_blocks", "cache_used_blocks", "cache_dirty_blocks",
	"cache_read_hits", "cache_read_misses", "cache_write_hits", "cache_write_misses",
	"pool_lv", "data_lv", "metadata_lv", "devices",
}, ",")

var pvFields = "pv_name,vg_name,pv_size,pv_free,pv_attr,vg_extent_size"

// Name is a VG/LV pair.
type Name struct {
	VG, LV string
}

func (n Name) String() string { return n.VG + "/" + n.LV }

// lvmName is what lvm2 accepts as a VG or LV name.
var lvmName = regexp.MustCompile(`^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$`)

// ParseName parses "VG/LV" or "/dev/VG/LV".
func ParseName(s string) (Name, error) {
	trimmed := strings.TrimPrefix(s, "/dev/")
	vg, lv, ok := strings.Cut(trimmed, "/")
	if !ok || !lvmName.MatchString(vg) || !lvmName.MatchString(lv) || vg == "." || vg == ".." || lv == "." || lv == ".." {
		return Name{}, fmt.Errorf("%q: expected VG/LV, like storage/slowlv", s)
	}
	return Name{VG: vg, LV: lv}, nil
}

// ValidVGName reports whether name is a VG name lvm2 accepts.
func ValidVGName(name string) bool {
	return lvmName.MatchString(name) && name != "." && name != ".."
}

// ValidLVName reports whether name may be given to lvcreate --name.
func ValidLVName(name string) bool {
	return lvmName.MatchString(name) && name != "." && name != ".." && !strings.HasPrefix(name, "snapshot") && !strings.HasPrefix(name, "pvmove")
}

// LV is a logical volume as lvm2 reports it.
type LV struct {
	Name      Name
	SizeBytes int64
	Segtype   string
	Layout    string
	// Cache is the attached cache, nil when the LV is not cached.
	Cache *Cache
	// Devices are the PVs (or sub-LVs) the LV's own segments use.
	Devices []string
	// PVs are the physical volumes under the LV's data, found by following
	// sub-LVs (a cached LV's origin, say); the cache's own PVs are not
	// included.
	PVs []string
	// Copies is how many extents growing the LV's data by one extent
	// takes at least: the images of an lvm raid1 or mirror origin, 2 for
	// raid10, 1 otherwise.
	Copies int64
	// Active tells an LV the kernel has a device for (lv_attr's fifth
	// letter "a"): only then does dm-cache keep counters and write back.
	Active bool
}

// Cached reports whether a dm-cache is attached.
func (lv *LV) Cached() bool { return lv.Cache != nil }

// Cache describes the cache attached to an LV: what recache records to
// re-create an identical one, and the kernel's counters.
type Cache struct {
	// Pool is the hidden cache pool LV (slowlv_cache_cpool).
	Pool string `json:"pool"`
	// Name is what lvcreate --name was given (slowlv_cache): lvm2 appends
	// _cpool to a cache pool once it is attached.
	Name              string   `json:"name"`
	Mode              string   `json:"mode"`
	Policy            string   `json:"policy"`
	Settings          string   `json:"settings,omitempty"`
	ChunkSizeBytes    int64    `json:"chunk_size_bytes"`
	SizeBytes         int64    `json:"size_bytes"`
	MetadataSizeBytes int64    `json:"metadata_size_bytes"`
	PVs               []string `json:"pvs"`
	// NotRecreatable says why lvcreate --type cache cannot make this cache
	// again ("its data LV is raid1", "it is a cachevol"), "" when it can.
	NotRecreatable string `json:"-"`
	// Health is what the 9th letter of the cached LV's lv_attr says about
	// dm-cache: "failed" (F), "metadata read-only" (M), "" when neither.
	Health string `json:"-"`

	TotalBlocks int64 `json:"-"`
	UsedBlocks  int64 `json:"-"`
	DirtyBlocks int64 `json:"-"`
	ReadHits    int64 `json:"-"`
	ReadMisses  int64 `json:"-"`
	WriteHits   int64 `json:"-"`
	WriteMisses int64 `json:"-"`
}

// PV is a physical volume of a VG.
type PV struct {
	Name        string
	FreeBytes   int64
	Allocatable bool
}

// VG is a volume group: its extent size, PVs and LVs.
type VG struct {
	Name            string
	ExtentSizeBytes int64
	PVs             []PV
	LVs             map[string]*LV
}

// ErrNotFound is wrapped by the errors of a VG or LV that does not exist.
var ErrNotFound = errors.New("not found")

// VGNames lists the volume groups lvm2 knows.
func (r *Runner) VGNames(ctx context.Context) ([]string, error) {
	report, err := r.Report(ctx, "vgs", "-o", "vg_name")
	if err != nil {
		return nil, fmt.Errorf("vgs: %w", err)
	}
	var names []string
	for _, row := range report["vg"] {
		names = append(names, row["vg_name"])
	}
	sort.Strings(names)
	return names, nil
}

// InspectVG reads a VG with all its PVs and LVs (two lvm2 reports). A VG
// lvm2 does not know is an error wrapping ErrNotFound.
func (r *Runner) InspectVG(ctx context.Context, vgName string) (*VG, error) {
	lvReport, err := r.Report(ctx, "lvs", "-a", "-o", lvFields, vgName)
	if err != nil {
		// Tell a VG that does not exist from any other failure, and name
		// the VGs there are.
		names, namesErr := r.VGNames(ctx)
		if namesErr == nil && !contains(names, vgName) {
			known := "none"
			if len(names) > 0 {
				known = strings.Join(names, ", ")
			}
			return nil, fmt.Errorf("volume group %q %w (volume groups: %s)", vgName, ErrNotFound, known)
		}
		return nil, fmt.Errorf("lvs %s: %w", vgName, err)
	}
	pvReport, err := r.Report(ctx, "pvs", "-o", pvFields)
	if err != nil {
		return nil, fmt.Errorf("pvs: %w", err)
	}
	return buildVG(vgName, pvReport, lvReport)
}

// buildVG turns the pvs and lvs reports of one VG into a VG.
func buildVG(vgName string, pvReport, lvReport Report) (*VG, error) {
	vg := &VG{Name: vgName, LVs: map[string]*LV{}}
	for _, row := range pvReport["pv"] {
		if row["vg_name"] != vgName {
			continue
		}
		free, err := row.Int("pv_free")
		if err != nil {
			return nil, err
		}
		extent, err := row.Int("vg_extent_size")
		if err != nil {
			return nil, err
		}
		vg.ExtentSizeBytes = extent
		// pv_attr "a--": the first letter is "a" when the PV is allocatable.
		vg.PVs = append(vg.PVs, PV{Name: row["pv_name"], FreeBytes: free, Allocatable: strings.HasPrefix(row["pv_attr"], "a")})
	}
	// lvs prints one row per segment when segment fields are asked for:
	// merge them, keeping the first row's values and every row's devices.
	rows := map[string]Row{}
	var order []string
	for _, row := range lvReport["lv"] {
		if row["vg_name"] != "" && row["vg_name"] != vgName {
			continue
		}
		name := hiddenName(row["lv_name"])
		if first, ok := rows[name]; ok {
			first["devices"] = first["devices"] + "," + row["devices"]
			continue
		}
		copied := Row{}
		for k, v := range row {
			copied[k] = v
		}
		rows[name] = copied
		order = append(order, name)
	}
	for _, name := range order {
		row := rows[name]
		size, err := row.Int("lv_size")
		if err != nil {
			return nil, err
		}
		attr := row["lv_attr"]
		vg.LVs[name] = &LV{Name: Name{VG: vgName, LV: name}, SizeBytes: size, Segtype: row["segtype"], Layout: row["lv_layout"], Devices: Devices(row["devices"]),
			Active: len(attr) > 4 && attr[4] == 'a'}
	}
	for _, name := range order {
		seen := map[string]bool{}
		collectPVs(name, rows, seen, 0)
		for pv := range seen {
			vg.LVs[name].PVs = append(vg.LVs[name].PVs, pv)
		}
		sort.Strings(vg.LVs[name].PVs)
		vg.LVs[name].Copies = dataCopies(name, rows, 0)
	}
	for _, name := range order {
		row := rows[name]
		if !isCachedRow(row) {
			continue
		}
		cache, err := buildCache(row, rows)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", vgName, name, err)
		}
		vg.LVs[name].Cache = cache
	}
	return vg, nil
}

func buildCache(lvRow Row, rows map[string]Row) (*Cache, error) {
	pool := hiddenName(lvRow["pool_lv"])
	c := &Cache{
		Pool:     pool,
		Name:     strings.TrimSuffix(strings.TrimSuffix(pool, "_cpool"), "_cvol"),
		Mode:     lvRow["cache_mode"],
		Policy:   lvRow["cache_policy"],
		Settings: lvRow["cache_settings"],
	}
	if attr := lvRow["lv_attr"]; len(attr) > 8 {
		switch attr[8] {
		case 'F':
			c.Health = "failed"
		case 'M':
			c.Health = "metadata read-only"
		}
	}
	var err error
	for field, dst := range map[string]*int64{
		"chunk_size": &c.ChunkSizeBytes, "cache_total_blocks": &c.TotalBlocks, "cache_used_blocks": &c.UsedBlocks,
		"cache_dirty_blocks": &c.DirtyBlocks, "cache_read_hits": &c.ReadHits, "cache_read_misses": &c.ReadMisses,
		"cache_write_hits": &c.WriteHits, "cache_write_misses": &c.WriteMisses,
	} {
		if *dst, err = lvRow.Int(field); err != nil {
			return nil, err
		}
	}
	poolRow, ok := rows[pool]
	if !ok {
		return nil, fmt.Errorf("cache pool %q is not in the lvs report", pool)
	}
	if c.SizeBytes, err = poolRow.Int("lv_size"); err != nil {
		return nil, err
	}
	if segtype := poolRow["segtype"]; segtype != "" && segtype != "cache-pool" {
		c.NotRecreatable = "it is a cachevol (" + segtype + " LV " + pool + "), not a cache pool"
	}
	var parts []string
	if data := hiddenName(poolRow["data_lv"]); data != "" {
		parts = append(parts, data)
		if dataRow, ok := rows[data]; ok {
			if segtype := dataRow["segtype"]; segtype != "" && segtype != "linear" && segtype != "striped" {
				c.NotRecreatable = "its data LV " + data + " is " + segtype
			}
			// The data LV's own size: a cache pool reports it as its size,
			// a cachevol reports the whole LV.
			if c.SizeBytes, err = dataRow.Int("lv_size"); err != nil {
				return nil, err
			}
		}
	}
	if meta := hiddenName(poolRow["metadata_lv"]); meta != "" {
		parts = append(parts, meta)
		if metaRow, ok := rows[meta]; ok {
			if segtype := metaRow["segtype"]; segtype != "" && segtype != "linear" && segtype != "striped" && c.NotRecreatable == "" {
				c.NotRecreatable = "its metadata LV " + meta + " is " + segtype
			}
			if c.MetadataSizeBytes, err = metaRow.Int("lv_size"); err != nil {
				return nil, err
			}
		}
	}
	if len(parts) == 0 {
		parts = []string{pool}
	}
	seen := map[string]bool{}
	for _, part := range parts {
		collectPVs(part, rows, seen, 0)
	}
	for pv := range seen {
		c.PVs = append(c.PVs, pv)
	}
	sort.Strings(c.PVs)
	return c, nil
}

// dataCopies is how many extents one more extent of the LV's data takes:
// a cached LV is looked through to its origin; an lvm raid1 or mirror keeps
// one per image, raid10 at least two.
func dataCopies(lvName string, rows map[string]Row, depth int) int64 {
	row, ok := rows[lvName]
	if !ok || depth > 8 {
		return 1
	}
	devices := Devices(row["devices"])
	switch row["segtype"] {
	case "cache", "writecache":
		if len(devices) > 0 {
			return dataCopies(hiddenName(devices[0]), rows, depth+1)
		}
	case "raid1", "mirror":
		images := map[string]bool{}
		for _, dev := range devices {
			images[dev] = true
		}
		return max(int64(len(images)), 1)
	case "raid10":
		return 2
	}
	return 1
}

// collectPVs follows the devices of an LV down to PVs: a sub-LV (a raid
// image of the cache data, say) is looked up and followed in turn.
func collectPVs(lvName string, rows map[string]Row, pvs map[string]bool, depth int) {
	row, ok := rows[lvName]
	if !ok || depth > 8 {
		return
	}
	for _, dev := range Devices(row["devices"]) {
		if _, isLV := rows[hiddenName(dev)]; isLV {
			collectPVs(hiddenName(dev), rows, pvs, depth+1)
			continue
		}
		pvs[dev] = true
	}
}

// LV returns the named LV of the VG, or an error wrapping ErrNotFound that
// lists the visible LVs.
func (vg *VG) LV(name string) (*LV, error) {
	if lv, ok := vg.LVs[name]; ok && !isHiddenLV(vg, name) {
		return lv, nil
	}
	var visible []string
	for n := range vg.LVs {
		if !isHiddenLV(vg, n) {
			visible = append(visible, n)
		}
	}
	sort.Strings(visible)
	known := "none"
	if len(visible) > 0 {
		known = strings.Join(visible, ", ")
	}
	return nil, fmt.Errorf("logical volume %s/%s %w (LVs of %s: %s)", vg.Name, name, ErrNotFound, vg.Name, known)
}

// isHiddenLV reports whether name is one of lvm2's internal LVs (cache pool,
// its data and metadata, origin, pmspare): they are reported in brackets.
func isHiddenLV(vg *VG, name string) bool {
	lv := vg.LVs[name]
	if lv == nil {
		return true
	}
	if strings.HasSuffix(name, "_pmspare") || strings.HasSuffix(name, "_corig") || strings.HasSuffix(name, "_cdata") || strings.HasSuffix(name, "_cmeta") {
		return true
	}
	return lv.Segtype == "cache-pool" && strings.HasSuffix(name, "_cpool")
}

// PV finds the VG's PV named path, also when path is a symlink to it
// (/dev/disk/by-id/...).
func (vg *VG) PV(path string) (PV, bool) {
	resolved, err := filepath.EvalSymlinks(path)
	for _, pv := range vg.PVs {
		if pv.Name == path {
			return pv, true
		}
		if err == nil {
			if other, err2 := filepath.EvalSymlinks(pv.Name); err2 == nil && other == resolved {
				return pv, true
			}
		}
	}
	return PV{}, false
}

// PVNames lists the names of the VG's PVs.
func (vg *VG) PVNames() []string {
	var names []string
	for _, pv := range vg.PVs {
		names = append(names, pv.Name)
	}
	return names
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// isCachedRow tells a cached LV: segment type "cache", or, in a report
// without segtype, the volume type "C" of lv_attr on an LV with a pool (the
// cache pool itself has the same letter but no pool_lv).
func isCachedRow(row Row) bool {
	if segtype, ok := row["segtype"]; ok && segtype != "" {
		return segtype == "cache"
	}
	return strings.HasPrefix(row["lv_attr"], "C") && row["pool_lv"] != ""
}

// uncacheLoses says why lvconvert --uncache of c could lose data, "" when
// it cannot. lvm2 skips the flush of a failed cache and deletes it with its
// dirty blocks; with read-only metadata no block can be marked clean. Only
// a writeback cache holds dirty blocks.
func (c *Cache) uncacheLoses() string {
	if c.Health == "" || c.Mode == "writethrough" || c.Mode == "passthrough" {
		return ""
	}
	return fmt.Sprintf("the %s cache %s is %s (lv_attr health %s): lvconvert --uncache would not write its dirty blocks back; check the fast PV and the cache (lvmcache(7)) before the cache is removed",
		c.Mode, c.Pool, c.Health, map[string]string{"failed": "F", "metadata read-only": "M"}[c.Health])
}
