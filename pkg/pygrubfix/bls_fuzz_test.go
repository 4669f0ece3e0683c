package pygrubfix

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// The fuzz targets of the BLS reader compare opsctl's Go reading of
// blscfg's rules with the plugin's awk reading of them (blsAwkFunctions,
// written apart from the Go code, run by mawk): two readings of the same
// C source that have to agree on every input. Inputs with NUL, \x01 or
// \x02 are left out of the comparison (awks differ on NUL; the others
// separate the harness's output).

// blsHarness prints, for the entry file ARGV[1] named id, its keys and
// values, the expand_val of each value with a fixed set of variables, and
// how its id compares with a few real ids; for a grubenv (mode=env) its
// variables.
const blsHarness = `BEGIN {
	if (mode == "env") {
		text = readfile(ARGV[1])
		if (env_nl == 0) text = substr(text, 1, length(text) - 1)
		ok = parse_grubenv(text)
		printf "ok=%d\002", ok
		for (k in GRUBENV) printf "%s\001%s\002", k, GRUBENV[k]
		exit 0
	}
	ENV["kernelopts"] = "root=/dev/xvda1 ro"
	ENV["a"] = "A"
	ENV["tuned_params"] = ""
	ENV["x_1"] = "y z"
	read_entry(ARGV[1], id)
	for (k = 1; k <= NK[1]; k++) {
		v = expand_val(VAL[1, k])
		printf "%s\001%s\001%s\001%d\002", KEY[1, k], VAL[1, k], v, XSET
	}
	n = split(ids, I, " ")
	for (i = 1; i <= n; i++) printf "cmp\001%d\002", bls_cmp(id, I[i])
	exit 0
}
`

var fuzzIDs = []string{
	el9MachineID + "-" + el9Newest, el9MachineID + "-" + el9Saved, el9MachineID + "-0-rescue",
	"fedora-6.5.6-300.fc39.x86_64", "x-1.0~rc1-1", "x-1.0-1+debug", "a", "a-b",
}

type awkHarness struct {
	awk, script, dir string
}

func newAwkHarness(tb testing.TB) *awkHarness {
	tb.Helper()
	h := &awkHarness{awk: testenv.Need(tb, "mawk", "mawk"), dir: tb.TempDir()}
	h.script = filepath.Join(h.dir, "harness.awk")
	if err := os.WriteFile(h.script, []byte(blsAwkFunctions+blsHarness), 0o644); err != nil {
		tb.Fatal(err)
	}
	return h
}

func (h *awkHarness) run(tb testing.TB, data []byte, vars ...string) []string {
	tb.Helper()
	file := filepath.Join(h.dir, "input")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	args := []string{}
	for _, v := range vars {
		args = append(args, "-v", v)
	}
	cmd := exec.Command(h.awk, append(args, "-f", h.script, file)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("awk harness: %v", err)
	}
	recs := strings.Split(string(out), "\x02")
	return recs[:len(recs)-1]
}

func comparable(data []byte) bool { return !bytes.ContainsAny(data, "\x00\x01\x02") }

var fuzzEnv = map[string]string{"kernelopts": "root=/dev/xvda1 ro", "a": "A", "tuned_params": "", "x_1": "y z"}

func FuzzBLSEntryParse(f *testing.F) {
	f.Add("fedora-6.5.6-300.fc39.x86_64", []byte("title Fedora Linux (6.5.6-300.fc39.x86_64) 39\nversion 6.5.6-300.fc39.x86_64\nlinux /vmlinuz-6.5.6-300.fc39.x86_64\ninitrd /initramfs-6.5.6-300.fc39.x86_64.img\noptions root=UUID=0d4a ro rhgb quiet\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class fedora\n"))
	f.Add(el8MachineID+"-"+el8Saved, []byte("title Rocky\nlinux /boot/vmlinuz\ninitrd /boot/initramfs.img $tuned_initrd\noptions $kernelopts $tuned_params\n"))
	f.Add("x-1-1", []byte("  # c\r\n\ttitle\tt\r\noptions $a x\n\nlinux /not-read\n"))
	f.Add("x", []byte("options $kernelopts$a ${a} $ $$ $x_1- a$\nkey \nlast"))
	h := newAwkHarness(f)
	// The fuzzer varies the id; the file is named id.conf, as blscfg
	// reads only those.
	f.Fuzz(func(t *testing.T, id string, data []byte) {
		name := id + ".conf"
		e, ok := ParseBLSEntry(name, data)
		if want := id != "" && !strings.HasPrefix(id, "."); ok != want || ok && e.ID != id {
			t.Fatalf("ParseBLSEntry(%q) ok %v", name, ok)
		}
		if !ok {
			return
		}
		for _, kv := range e.Keys {
			if kv.Key == "" || strings.ContainsAny(kv.Key+kv.Value, "\n\r\x00") || strings.HasPrefix(kv.Value, " ") || strings.HasPrefix(kv.Value, "\t") {
				t.Fatalf("key %q value %q", kv.Key, kv.Value)
			}
		}
		if !comparable(data) || !comparable([]byte(name)) || strings.ContainsAny(name, "/\\\n") {
			return
		}
		var got []string
		for _, kv := range e.Keys {
			v, set := expandBLSValue(kv.Value, fuzzEnv)
			got = append(got, fmt.Sprintf("%s\x01%s\x01%s\x01%d", kv.Key, kv.Value, v, b2i(set)))
		}
		for _, id := range fuzzIDs {
			got = append(got, fmt.Sprintf("cmp\x01%d", blsCompare(e.ID, id)))
		}
		want := h.run(t, data, "id="+awkEscape(e.ID), "ids="+strings.Join(fuzzIDs, " "))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("Go and awk differ on %q %q:\nGo:  %q\nawk: %q", name, data, got, want)
		}
	})
}

func FuzzGrubenvParse(f *testing.F) {
	f.Add([]byte(grubenvBlock("saved_entry=" + el9MachineID + "-" + el9Saved)))
	f.Add([]byte(grubenvSignature + "kernelopts=root=/dev/xvda1 a\\\\b c\\\nd\nsaved_entry=1\n"))
	f.Add([]byte(grubenvSignature + "a=b\n#x\nno equals\nc=d\ne=f"))
	f.Add([]byte("# not a grubenv\na=b\n"))
	h := newAwkHarness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, ok := ParseGrubenv(data)
		if !ok && vars != nil {
			t.Fatal("vars without a grubenv")
		}
		if !comparable(data) {
			return
		}
		got := []string{fmt.Sprintf("ok=%d", b2i(ok))}
		var keys []string
		for k := range vars {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			got = append(got, k+"\x01"+vars[k])
		}
		nl := "1"
		if len(data) > 0 && data[len(data)-1] != '\n' {
			nl = "0"
		}
		want := h.run(t, data, "mode=env", "env_nl="+nl)
		sort.Strings(want[1:])
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("Go and awk differ on %q:\nGo:  %q\nawk: %q", data, got, want)
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// awkEscape protects backslashes of a -v value, which awk interprets.
func awkEscape(s string) string { return strings.ReplaceAll(s, `\`, `\\`) }
