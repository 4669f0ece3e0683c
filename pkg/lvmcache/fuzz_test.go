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
	f.Add("lvm2 tools\n\tLVM version:\t2.3.1\nLibrary version: 1.02.185\n")
	f.Add("Library version: 1.02.185\n  LVM version: 2.3.12\n  LVM version: 2.2.100\n")
	f.Add("  LVM version: 2.03\n")
	f.Fuzz(func(t *testing.T, out string) {
		v, err := ParseVersion(out)
		want, ok := lvmVersionOracle(out)
		if ok != (err == nil) || (ok && v != want) {
			t.Fatalf("%q: ParseVersion = %v, %v; the first \"LVM version: X.Y.Z\" line says %v (found %v)", out, v, err, want, ok)
		}
	})
}

// lvmVersionOracle reads the numbers of the first line of out that is
// "LVM version: X.Y.Z" (spaces allowed around), independently of the
// regular expression ParseVersion uses: 1 to 4 digits each, the patch
// number's first 4 digits when it has more.
func lvmVersionOracle(out string) (Version, bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }
	for start := 0; start <= len(out); {
		i := start
		for i < len(out) && isSpace(out[i]) {
			i++
		}
		if rest, ok := strings.CutPrefix(out[i:], "LVM version:"); ok {
			rest = strings.TrimLeft(rest, " \t\n\r\f")
			var nums [3]int
			good := true
			for k := range nums {
				d := 0
				for d < len(rest) && d < 4 && rest[d] >= '0' && rest[d] <= '9' {
					nums[k] = nums[k]*10 + int(rest[d]-'0')
					d++
				}
				if d == 0 || (k < 2 && (d == len(rest) || rest[d] != '.')) {
					good = false
					break
				}
				rest = rest[d:]
				if k < 2 {
					rest = rest[1:]
				}
			}
			if good {
				return Version{nums[0], nums[1], nums[2]}, true
			}
		}
		nl := strings.IndexByte(out[start:], '\n')
		if nl < 0 {
			break
		}
		start += nl + 1
	}
	return Version{}, false
}

func FuzzParseName(f *testing.F) {
	for _, seed := range []string{"storage/slowlv", "/dev/vg-1/lv_2", "slowlv", "a/b/c", "-vg/lv", "vg/..", ""} {
		f.Add(seed)
	}
	f.Add("/dev/sdb(0), /dev/sdc(1024)")
	f.Add(" ,pv1,,(3)")
	f.Fuzz(func(t *testing.T, s string) {
		// Devices of any field: each entry a non-empty part of the field,
		// one device, from between its commas.
		for _, d := range Devices(s) {
			if d == "" || strings.Contains(d, ",") || !strings.Contains(s, d) {
				t.Fatalf("Devices(%q) = %q", s, Devices(s))
			}
		}
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
	})
}
