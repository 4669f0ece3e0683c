package pygrubfix

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkGrub2ParseVsPygrub parses the EL7 grub.cfg with the Go parser
// and, in the same run, with pygrub 4.17's Grub2ConfigFile (b.N parses in
// one python process, start-up excluded), and reports pygrub's time per
// parse and the ratio.
func BenchmarkGrub2ParseVsPygrub(b *testing.B) {
	data := []byte(corpus(b, "centos7.cfg"))
	script := `
import sys, time, logging
logging.disable(logging.CRITICAL)
sys.path.insert(0, sys.argv[1])
from grub import GrubConf
buf = open(sys.argv[2]).read()
n = int(sys.argv[3])
t = time.perf_counter()
for _ in range(n):
    GrubConf.Grub2ConfigFile().parse(buf)
print((time.perf_counter() - t) / n * 1e9)
`
	needPygrub(b)
	out, err := exec.Command(pygrubPython(b), "-B", "-c", script, pygrubLib417, "testdata/corpus/centos7.cfg", strconv.Itoa(b.N)).Output()
	if err != nil {
		b.Fatal(err)
	}
	pyNs, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(data, ParserGrub2, Xen417, FromImage); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	goNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(pyNs, "pygrub-ns/op")
	b.ReportMetric(pyNs/goNs, "x-pygrub-speed")
}
