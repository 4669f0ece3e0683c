package lvmcache

import (
	"context"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// CacheCounters are dm-cache's counters of one cached LV, from one status
// of the kernel: the values the Prometheus metrics carry.
type CacheCounters struct {
	// LV is "VG/LV"; Mode writeback, writethrough or passthrough.
	LV     string
	Mode   string
	Status *DMCacheStatus
}

// Counters reads the kernel's counters of the cached LVs among statuses
// (as Status, StatusOfVG and StatusAll return them). An LV that is not
// active has no dm-cache device and no counters: it is left out.
func (m *Manager) Counters(ctx context.Context, statuses []Status) ([]CacheCounters, error) {
	var all []CacheCounters
	for _, s := range statuses {
		if !s.Cached || !s.Active {
			continue
		}
		name, err := ParseName(s.LV)
		if err != nil {
			return nil, err
		}
		st, err := m.Runner.DMCacheStatus(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("lvm cache status %s: %w", name, err)
		}
		// lvm's mode, not the kernel's: during a flush by the cleaner
		// policy lvm2 loads the table in writethrough, and the series of
		// the LV must not change its labels for that.
		mode := s.Mode
		if mode == "" {
			mode = st.Mode()
		}
		all = append(all, CacheCounters{LV: s.LV, Mode: mode, Status: st})
	}
	return all, nil
}

// The metrics of WriteMetrics: name, help, type, and the counter each
// takes from a status.
var cacheMetrics = []struct {
	name, help string
	valueType  prometheus.ValueType
	value      func(*DMCacheStatus) int64
}{
	{"opsctl_lvm_cache_read_hits_total", "Reads of the LV of blocks in its dm-cache (dm-cache's read hits).",
		prometheus.CounterValue, func(s *DMCacheStatus) int64 { return s.ReadHits }},
	{"opsctl_lvm_cache_read_misses_total", "Reads of the LV of blocks not in its dm-cache (dm-cache's read misses).",
		prometheus.CounterValue, func(s *DMCacheStatus) int64 { return s.ReadMisses }},
	{"opsctl_lvm_cache_write_hits_total", "Writes to the LV of blocks in its dm-cache (dm-cache's write hits).",
		prometheus.CounterValue, func(s *DMCacheStatus) int64 { return s.WriteHits }},
	{"opsctl_lvm_cache_write_misses_total", "Writes to the LV of blocks not in its dm-cache (dm-cache's write misses).",
		prometheus.CounterValue, func(s *DMCacheStatus) int64 { return s.WriteMisses }},
	{"opsctl_lvm_cache_promotions_total", "Blocks dm-cache copied from the origin into the cache.",
		prometheus.CounterValue, func(s *DMCacheStatus) int64 { return s.Promotions }},
	{"opsctl_lvm_cache_demotions_total", "Blocks dm-cache dropped from the cache to make room (written back first when dirty).",
		prometheus.CounterValue, func(s *DMCacheStatus) int64 { return s.Demotions }},
	{"opsctl_lvm_cache_dirty_blocks", "Cache blocks holding data the origin does not have yet: what a flush writes back.",
		prometheus.GaugeValue, func(s *DMCacheStatus) int64 { return s.DirtyBlocks }},
	{"opsctl_lvm_cache_used_blocks", "Cache blocks in use.",
		prometheus.GaugeValue, func(s *DMCacheStatus) int64 { return s.UsedBlocks }},
	{"opsctl_lvm_cache_blocks", "Cache blocks in all (the cache size over the block size).",
		prometheus.GaugeValue, func(s *DMCacheStatus) int64 { return s.TotalBlocks }},
}

// countersCollector hands the counters to a registry as constant metrics.
type countersCollector struct {
	counters []CacheCounters
	descs    []*prometheus.Desc
}

func newCountersCollector(counters []CacheCounters) *countersCollector {
	c := &countersCollector{counters: counters}
	for _, metric := range cacheMetrics {
		c.descs = append(c.descs, prometheus.NewDesc(metric.name, metric.help, []string{"lv", "mode"}, nil))
	}
	return c
}

func (c *countersCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *countersCollector) Collect(ch chan<- prometheus.Metric) {
	for _, lv := range c.counters {
		for i, metric := range cacheMetrics {
			ch <- prometheus.MustNewConstMetric(c.descs[i], metric.valueType, float64(metric.value(lv.Status)), lv.LV, lv.Mode)
		}
	}
}

// WriteMetrics writes the counters in Prometheus's text exposition format,
// with the client libraries' own encoder: for each metric its HELP and
// TYPE lines, then one sample per LV labelled lv="VG/LV" and mode. The
// counters are dm-cache's, unchanged (a float64 holds them exactly up to
// 2^53).
func WriteMetrics(w io.Writer, counters []CacheCounters) error {
	registry := prometheus.NewPedanticRegistry()
	if err := registry.Register(newCountersCollector(counters)); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	families, err := registry.Gather()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, family := range families {
		if err := enc.Encode(family); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}
