package lvmcache

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseMetrics reads Prometheus text with Prometheus's own parser.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return families
}

// TestMetricsAreDMCachesCountersWithHelpAndType: every metric that
// docs/lvm.md lists, with HELP and TYPE, one sample per LV labelled lv and mode,
// the values exactly the kernel's, large ones too.
func TestMetricsAreDMCachesCountersWithHelpAndType(t *testing.T) {
	big, err := ParseDMCacheStatus("0 1 cache 8 15/2048 128 512/3072 9007199254740991 3979 1024 7 3 11 440 1 writeback 2 migration_threshold 2048 smq 0 rw -")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := ParseDMCacheStatus(dmStatusFresh)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteMetrics(&buf, []CacheCounters{{LV: "storage/slowlv", Mode: "writeback", Status: big}, {LV: "other/lv-2", Mode: "writethrough", Status: fresh}}); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	families := parseMetrics(t, text)
	want := map[string]struct {
		kind  dto.MetricType
		value float64
	}{
		"opsctl_lvm_cache_read_hits_total":    {dto.MetricType_COUNTER, 9007199254740991},
		"opsctl_lvm_cache_read_misses_total":  {dto.MetricType_COUNTER, 3979},
		"opsctl_lvm_cache_write_hits_total":   {dto.MetricType_COUNTER, 1024},
		"opsctl_lvm_cache_write_misses_total": {dto.MetricType_COUNTER, 7},
		"opsctl_lvm_cache_demotions_total":    {dto.MetricType_COUNTER, 3},
		"opsctl_lvm_cache_promotions_total":   {dto.MetricType_COUNTER, 11},
		"opsctl_lvm_cache_dirty_blocks":       {dto.MetricType_GAUGE, 440},
		"opsctl_lvm_cache_used_blocks":        {dto.MetricType_GAUGE, 512},
		"opsctl_lvm_cache_blocks":             {dto.MetricType_GAUGE, 3072},
	}
	if len(families) != len(want) {
		t.Errorf("%d families, want %d:\n%s", len(families), len(want), text)
	}
	for name, w := range want {
		family := families[name]
		if family == nil || family.GetType() != w.kind || family.GetHelp() == "" || len(family.Metric) != 2 {
			t.Errorf("%s: %v", name, family)
			continue
		}
		if !strings.Contains(text, "# HELP "+name+" ") || !strings.Contains(text, "# TYPE "+name+" ") {
			t.Errorf("%s: no HELP or TYPE line", name)
		}
		for _, metric := range family.Metric {
			labels := map[string]string{}
			for _, l := range metric.Label {
				labels[l.GetName()] = l.GetValue()
			}
			value := metric.GetCounter().GetValue() + metric.GetGauge().GetValue()
			switch labels["lv"] {
			case "storage/slowlv":
				if labels["mode"] != "writeback" || value != w.value {
					t.Errorf("%s{lv=storage/slowlv}: %v %v, want %v", name, labels, value, w.value)
				}
			case "other/lv-2":
				if labels["mode"] != "writethrough" || (name == "opsctl_lvm_cache_blocks") != (value == 3072) {
					t.Errorf("%s{lv=other/lv-2}: %v %v", name, labels, value)
				}
			default:
				t.Errorf("%s: labels %v", name, labels)
			}
		}
	}
	if float64(9007199254740991) != math.Pow(2, 53)-1 {
		t.Fatal("the largest counter a float64 holds exactly")
	}
	// No cached LV: an empty exposition, which node_exporter accepts.
	buf.Reset()
	if err := WriteMetrics(&buf, nil); err != nil || buf.Len() != 0 {
		t.Errorf("no LV: %q, %v", buf.String(), err)
	}
}

// TestCountersSkipInactiveAndPlainLVs: only an active cached LV has
// dm-cache counters; the label mode is lvm's.
func TestCountersSkipInactiveAndPlainLVs(t *testing.T) {
	m, _ := newFake(t, func(s *fakeState) {
		s.LVs = append(s.LVs, &fakeLV{Name: "sleeping", Extents: 2, PV: "/dev/slow",
			Cache: &fakeCache{Name: "sleeping_cache", Mode: "writeback", Policy: "smq", Chunk: 65536, DataExtents: 4, MetaExtents: 2, PV: "/dev/fast", Inactive: true}})
	})
	all, err := m.StatusAll(context.Background())
	if err != nil || len(all) != 2 {
		t.Fatalf("StatusAll: %v %v", all, err)
	}
	plain, err := m.Status(context.Background(), Name{"storage", "plainlv"})
	if err != nil {
		t.Fatal(err)
	}
	counters, err := m.Counters(context.Background(), append(all, plain))
	if err != nil || len(counters) != 1 || counters[0].LV != "storage/slowlv" || counters[0].Mode != "writeback" || counters[0].Status.DirtyBlocks != 300 {
		t.Errorf("counters %+v, %v; want storage/slowlv alone", counters, err)
	}
}
