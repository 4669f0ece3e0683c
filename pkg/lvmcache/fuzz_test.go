package lvmcache

import (
	"strings"
	"testing"
)

func FuzzParseSize(f *testing.F) {
	for _, seed := range []string{"100G", "1.5g", "+200G", "-5G", "12Q", "0", "512b", ".5t", "9999999999999999999p"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil {
			if n <= 0 {
				t.Fatalf("ParseSize(%q) = %d without error", s, n)
			}
			// What lvm2 is given means the same number of bytes.
			if back, err := parseBytes(lvmSizeArg(n)); err != nil || back != n {
				t.Fatalf("%q: %d -> %s -> %d, %v", s, n, lvmSize(n), back, err)
			}
		} else if strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error for %q", s)
		}
		r, err := ParseResizeSize(s)
		if err == nil && r.Bytes <= 0 {
			t.Fatalf("ParseResizeSize(%q) = %+v", s, r)
		}
	})
}

// lvmSizeArg is lvmSize in the syntax parseBytes reads.
func lvmSizeArg(n int64) string { return lvmSize(n) }

func FuzzParseReport(f *testing.F) {
	for _, name := range []string{"lvs-dirty.json", "lvs-cached.json", "lvs-plain.json", "lvs-log.json", "pvs.json", "vgs.json"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte(`{"report":[{"lv":[{"lv_name":"x","lv_size":1}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		report, err := ParseReport(data)
		if err != nil {
			return
		}
		// Whatever parsed must build a VG or fail cleanly, never panic.
		vg, err := buildVG("storage", report, report)
		if err != nil {
			return
		}
		for name := range vg.LVs {
			if lv, err := vg.LV(name); err == nil {
				_ = StatusOf(lv)
			}
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Add("  LVM version:     2.03.16(2) (2022-05-18)\n")
	f.Add("LVM version: 2.02.187(2)-RHEL7 (2020-03-24)")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, out string) {
		v, err := ParseVersion(out)
		if err == nil && (v.Major < 0 || v.Minor < 0 || v.Patch < 0) {
			t.Fatalf("%q: %v", out, v)
		}
	})
}

func FuzzParseName(f *testing.F) {
	for _, seed := range []string{"storage/slowlv", "/dev/vg-1/lv_2", "slowlv", "a/b/c", "-vg/lv", "vg/..", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := ParseName(s)
		if err != nil {
			return
		}
		// A parsed name is safe on lvm2's command line and reads back.
		if strings.ContainsAny(name.String(), " \t\n'\"$`\\") || strings.HasPrefix(name.VG, "-") || strings.HasPrefix(name.LV, "-") {
			t.Fatalf("%q parsed to unsafe %q", s, name)
		}
		again, err := ParseName(name.String())
		if err != nil || again != name {
			t.Fatalf("%q: %v does not read back: %v %v", s, name, again, err)
		}
		if got := Devices(s); len(got) > len(s)+1 {
			t.Fatalf("Devices(%q) = %v", s, got)
		}
	})
}
