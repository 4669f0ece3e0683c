package pygrubfix

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Cases of rpm's own version comparison tests (rpmvercmp.at), which
// blscfg's vercmp copies, and the two places where blscfg's copy differs
// from today's rpm: + sorts after the end of a version, and ^ is a
// separator like any other.
func TestRPMVercmp(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0}, {"1.0", "2.0", -1}, {"2.0.1", "2.0", 1}, {"2.0.1a", "2.0.1", 1},
		{"5.5p1", "5.5p2", -1}, {"5.5p10", "5.5p1", 1}, {"10xyz", "10.1xyz", -1},
		{"xyz10", "xyz10.1", -1}, {"xyz.4", "8", -1}, {"1b.fc17", "1.fc17", -1},
		{"6.0.rc1", "6.0", 1}, {"10b2", "10a1", 1}, {"1.0aa", "1.0a", 1},
		{"10.0001", "10.1", 0}, {"10.0001", "10.0039", -1}, {"4.999.9", "5.0", -1},
		{"20101121", "20101122", -1}, {"2_0", "2.0", 0}, {"a+", "a_", 1},
		{"1.0~rc1", "1.0", -1}, {"1.0~rc1", "1.0~rc2", -1}, {"1.0~rc1~git123", "1.0~rc1", -1},
		{"1.0^", "1.0", 0}, {"1.0+debug", "1.0", 1}, {"1.0", "1.0+debug", -1},
		{"284.11.1.el9_2.x86_64", "362.8.1.el9_3.x86_64", -1},
	} {
		if got := rpmVercmp(c.a, c.b); got != c.want {
			t.Errorf("vercmp(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := rpmVercmp(c.b, c.a); got != -c.want {
			t.Errorf("vercmp(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

// TestGrubCfgEnvOfRocky9: grubenv's saved_entry becomes the default,
// kernelopts falls back to grub.cfg's only when grubenv has none, 00_tuned
// empties the tuned variables, and the boot counting block (whose test
// opsctl cannot run) does not set default=1.
func TestGrubCfgEnvOfRocky9(t *testing.T) {
	cfg := []byte(blsTestdata(t, "rocky9-grub.cfg"))
	env, _ := grubCfgEnv(cfg, map[string]string{"saved_entry": "x-1-1", "tuned_params": "isolcpus=1", "boot_counter": "0", "boot_success": "0"}, true)
	if env["default"] != "x-1-1" || env["kernelopts"] != "root=/dev/mapper/rl-root ro resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root rd.lvm.lv=rl/swap console=hvc0 " || env["tuned_params"] != "" || env["menuentry_id_option"] != "" {
		t.Errorf("env %q", env)
	}
	env, _ = grubCfgEnv(cfg, map[string]string{"kernelopts": "root=/dev/xvda1"}, true)
	if env["kernelopts"] != "root=/dev/xvda1" || env["default"] != "" {
		t.Errorf("with grubenv's kernelopts: %q", env)
	}
	if env, _ = grubCfgEnv(cfg, map[string]string{"saved_entry": "x"}, false); env["default"] != "" {
		t.Errorf("no grubenv: default %q", env["default"])
	}
}

// TestGrubCfgEnvBoundsWhatItExpands: a value beyond maxExpansion, or
// variables beyond maxEnvBytes in all, is an *expansionError naming them;
// values of a real size are kept exactly.
func TestGrubCfgEnvBoundsWhatItExpands(t *testing.T) {
	long := strings.Repeat("a", maxExpansion/2)
	var many strings.Builder
	many.WriteString("set v=\"" + long + "\"\n")
	for i := range 2 * maxEnvBytes / len(long) {
		fmt.Fprintf(&many, "set w_%d=$v\n", i)
	}
	cases := map[string]struct {
		cfg  string
		want string // in the error; "" for none
	}{
		"doubling":        {"set x=aaaa\n" + strings.Repeat("set x=\"$x$x\"\n", 40), "the variable x grows beyond 64 KiB"},
		"just below":      {"set x=" + long + "\nset x=\"$x${x}\"\n", ""},
		"just beyond":     {"set x=" + long + "\nset x=\"$x${x}b\"\n", "the variable x grows beyond"},
		"many variables":  {many.String(), "the variables together grow beyond"},
		"reassigned fits": {strings.Repeat("set v=\""+long+"\"\n", 100), ""},
	}
	for name, tc := range cases {
		env, err := grubCfgEnv([]byte(tc.cfg), nil, false)
		var exp *expansionError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (!errors.As(err, &exp) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want an expansionError with %q", name, err, tc.want)
		case name == "just below" && env["x"] != long+long:
			t.Errorf("just below: x is %d bytes, want %d", len(env["x"]), 2*len(long))
		}
	}
}
