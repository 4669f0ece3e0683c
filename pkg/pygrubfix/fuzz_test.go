package pygrubfix

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// pythonOracle is one python3 process that parses configs with pygrub
// 4.17's own GrubConf.py and ExtLinuxConf.py, as pygrub does for a config
// read from a disk image (decoded as UTF-8, split at "\n").
type pythonOracle struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

const oracleScript = `
import sys, json, struct, logging
logging.disable(logging.CRITICAL)
sys.path.insert(0, sys.argv[1])
from grub import GrubConf, ExtLinuxConf
classes = {"g": GrubConf.Grub2ConfigFile, "l": GrubConf.GrubConfigFile, "e": ExtLinuxConf.ExtLinuxConfigFile}
inp, out = sys.stdin.buffer, sys.stdout
while True:
    head = inp.read(5)
    if len(head) < 5:
        break
    n, kind = struct.unpack(">I", head[:4])[0], chr(head[4])
    data = inp.read(n)
    try:
        cf = classes[kind]()
        cf.filename = "/boot/x"
        cf.parse(data.decode("utf-8"))
        images = [[i.title, None if i.kernel is None else i.kernel[1],
                   None if i.initrd is None else i.initrd[1], i.args or ""] for i in cf.images]
        sel = cf.default
        if not images:
            sel = -1
        elif sel >= len(images):
            sel = 0
        res = {"images": images, "default": sel}
    except Exception as e:
        res = {"error": "%s: %s" % (type(e).__name__, e)}
    out.write(json.dumps(res) + "\n")
    out.flush()
`

func startOracle(tb testing.TB) *pythonOracle {
	tb.Helper()
	needPygrub(tb)
	cmd := exec.Command(pygrubPython(tb), "-B", "-c", oracleScript, pygrubLib417)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { in.Close(); cmd.Wait() })
	return &pythonOracle{cmd: cmd, in: in, out: bufio.NewReader(out)}
}

type oracleResult struct {
	Error   string       `json:"error"`
	Images  [][4]*string `json:"images"`
	Default int          `json:"default"`
}

func (o *pythonOracle) parse(tb testing.TB, kind byte, data []byte) oracleResult {
	head := make([]byte, 5)
	binary.BigEndian.PutUint32(head, uint32(len(data)))
	head[4] = kind
	if _, err := o.in.Write(append(head, data...)); err != nil {
		tb.Fatalf("python oracle: %v", err)
	}
	line, err := o.out.ReadBytes('\n')
	if err != nil {
		tb.Fatalf("python oracle: %v", err)
	}
	var res oracleResult
	if err := json.Unmarshal(line, &res); err != nil {
		tb.Fatalf("python oracle: %v: %s", err, line)
	}
	return res
}

// compareWithPygrub fails when the Go parser accepts what pygrub rejects,
// rejects what it accepts, or reads other entries or another default.
func compareWithPygrub(t *testing.T, o *pythonOracle, kind byte, p Parser, data []byte) {
	if len(data) > fsReadMax {
		return // pygrub only reads the first MiB; the oracle gets it whole
	}
	cfg, err := Parse(data, p, Xen417, FromImage)
	want := o.parse(t, kind, data)
	if (err != nil) != (want.Error != "") {
		t.Fatalf("%s on %q: go error %v, pygrub error %q", p, data, err, want.Error)
	}
	if err != nil {
		return
	}
	if len(cfg.Entries) != len(want.Images) {
		t.Fatalf("%s on %q: %d entries, pygrub %d", p, data, len(cfg.Entries), len(want.Images))
	}
	for i, img := range want.Images {
		e := cfg.Entries[i]
		if e.Title != deref(img[0]) || e.HasKernel != (img[1] != nil) || e.Kernel != deref(img[1]) ||
			e.HasInitrd != (img[2] != nil) || e.Initrd != deref(img[2]) || e.Args != deref(img[3]) {
			t.Fatalf("%s on %q: entry %d = %+v, pygrub %q %v %v %q", p, data, i, e, deref(img[0]), deref(img[1]), deref(img[2]), deref(img[3]))
		}
	}
	if cfg.Default != want.Default {
		t.Fatalf("%s on %q: default %d, pygrub %d", p, data, cfg.Default, want.Default)
	}
}

func addCorpusSeeds(f *testing.F) {
	files, err := filepath.Glob("testdata/corpus/*")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/corpus (%v): the target would compare nothing with pygrub", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzGrub2Parse: the grub2 parser never panics and agrees with pygrub
// 4.17's own Grub2ConfigFile on every input: it never accepts more.
func FuzzGrub2Parse(f *testing.F) {
	addCorpusSeeds(f)
	o := startOracle(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		compareWithPygrub(t, o, 'g', ParserGrub2, data)
		// The 4.1 emulation must not panic either.
		_, _ = Parse(data, ParserGrub2, Xen41, FromFile)
	})
}

// FuzzLegacyParse: the same for grub-legacy menu.lst.
func FuzzLegacyParse(f *testing.F) {
	addCorpusSeeds(f)
	o := startOracle(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		compareWithPygrub(t, o, 'l', ParserLegacy, data)
	})
}

// FuzzExtlinuxParse: the same for extlinux.conf.
func FuzzExtlinuxParse(f *testing.F) {
	f.Add([]byte("DEFAULT linux\nLABEL linux\n  KERNEL /boot/vmlinuz\n  APPEND root=/dev/xvda1 initrd=/boot/initrd quiet\n"))
	f.Add([]byte("label xen\n kernel mboot.c32\n append xen.gz --- vmlinuz ro --- initrd.img\n"))
	o := startOracle(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		compareWithPygrub(t, o, 'e', ParserExtlinux, data)
	})
}

// FuzzPatchSource: the patcher never panics, and a patched text needs no
// further patch (idempotence).
func FuzzPatchSource(f *testing.F) {
	// The seeds that matter are pygrub 4.17's own file and its greedy
	// revert: without pygrub they would be dropped without a word.
	needPygrub(f)
	data, err := os.ReadFile(filepath.Join(pygrubLib417, "grub/GrubConf.py"))
	if err != nil {
		testenv.Missing(f, fmt.Sprintf("pygrub 4.17's GrubConf.py (xen-utils-4.17): %v", err))
	}
	if !strings.Contains(string(data), fixedTitle) {
		f.Fatalf("%s/grub/GrubConf.py has no %q to revert", pygrubLib417, fixedTitle)
	}
	f.Add(string(data))
	f.Add(strings.Replace(string(data), fixedTitle, greedyTitle, 1))
	f.Add("class Grub2Image:\n    commands = {'set:root': 'root',\n                'linux': 'kernel',\n                'initrd': 'initrd',\n}\n            title_match = re.match('^menuentry [\"\\'](.*)[\"\\'] (.*){', l)\n")
	f.Fuzz(func(t *testing.T, src string) {
		fp, err := patchSource("GrubConf.py", src)
		if err != nil {
			return
		}
		again, err := patchSource("GrubConf.py", fp.New)
		if err != nil || len(again.Changes) != 0 {
			t.Fatalf("patched text is patched again (%v, %v):\n%s", err, again.Changes, fp.New)
		}
		if len(fp.Changes) == 0 && fp.New != src {
			t.Fatal("text changed without a change recorded")
		}
		_ = fmt.Sprint(UnifiedDiff("a", "b", src, fp.New))
	})
}
