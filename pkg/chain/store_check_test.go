package chain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// busyState writes a state file as a receiver leaves it after some work:
// forty runs (several pages of JSON), pipelines created and running, a
// failed step, intents, events and a recorded image digest.
func busyState(t *testing.T) string {
	t.Helper()
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/python: ops/base", "ops/app: ops/ruby ops/python"))
	for i := range 40 {
		if code := fx.pipeline("ops/base", int64(100+i), "success", hookOpts{}); code != 200 {
			t.Fatalf("success of base: HTTP %d", code)
		}
	}
	fx.work()
	ruby := fx.api.pipelineOf(t, "ops/ruby")
	if code := fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID}); code != 200 {
		t.Fatalf("failure of ruby: HTTP %d", code)
	}
	// One run is left with its pipelines still to create (intents).
	if code := fx.pipeline("ops/base", 999, "success", hookOpts{}); code != 200 {
		t.Fatalf("success of base: HTTP %d", code)
	}
	err := fx.engine.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDigests).Put([]byte("docker.io/library/debian:bookworm"), []byte("sha256:"+strings.Repeat("ab", 32)))
	})
	if err != nil {
		t.Fatal(err)
	}
	fx.engine.Close()
	return fx.path
}

// boltMeta is what the tests need of a bbolt file's newest meta page.
type boltMeta struct {
	pageSize         int
	freelist, pageID uint64 // the freelist page, and the high water mark
}

// readBoltMeta reads the meta pages as bbolt lays them out (a 16-byte page
// header, then magic, version, page size, flags, root bucket, freelist,
// pgid, txid, checksum; little-endian on this machine).
func readBoltMeta(t testing.TB, data []byte) boltMeta {
	t.Helper()
	var best boltMeta
	var bestTxid uint64
	pageSize := int(binary.LittleEndian.Uint32(data[24:]))
	for _, off := range []int{0, pageSize} {
		m := data[off+16:]
		if binary.LittleEndian.Uint32(m[0:]) != 0xED0CDAED {
			continue
		}
		if txid := binary.LittleEndian.Uint64(m[48:]); best.pageSize == 0 || txid > bestTxid {
			best = boltMeta{pageSize: pageSize, freelist: binary.LittleEndian.Uint64(m[32:]), pageID: binary.LittleEndian.Uint64(m[40:])}
			bestTxid = txid
		}
	}
	if best.pageSize == 0 {
		t.Fatal("no valid meta page")
	}
	return best
}

// leafPageWith returns the offset of the first leaf page (flags 0x02)
// holding needle.
func leafPageWith(t *testing.T, data []byte, m boltMeta, needle string) int {
	t.Helper()
	for id := 2; id < int(m.pageID); id++ {
		off := id * m.pageSize
		page := data[off : off+m.pageSize]
		if binary.LittleEndian.Uint16(page[8:]) == 0x02 && bytes.Contains(page, []byte(needle)) {
			return off
		}
	}
	t.Fatalf("no leaf page holds %q", needle)
	return 0
}

// corruptions damage a state file the ways disks, crashes and people do.
var corruptions = []struct {
	name string
	do   func(t *testing.T, path string)
}{
	{"truncated to half", func(t *testing.T, path string) {
		fi, _ := os.Stat(path)
		m := readBoltMeta(t, mustReadFile(t, path))
		truncateFile(t, path, fi.Size()/2/int64(m.pageSize)*int64(m.pageSize))
	}},
	{"truncated mid-page", func(t *testing.T, path string) {
		fi, _ := os.Stat(path)
		truncateFile(t, path, fi.Size()/2+123)
	}},
	{"truncated below two pages", func(t *testing.T, path string) { truncateFile(t, path, 5000) }},
	{"freelist page overwritten", func(t *testing.T, path string) {
		data := mustReadFile(t, path)
		m := readBoltMeta(t, data)
		off := int(m.freelist) * m.pageSize
		copy(data[off:off+m.pageSize], bytes.Repeat([]byte{0xAA}, m.pageSize))
		writeBack(t, path, data)
	}},
	{"freelist page marked as a leaf", func(t *testing.T, path string) {
		data := mustReadFile(t, path)
		m := readBoltMeta(t, data)
		binary.LittleEndian.PutUint16(data[int(m.freelist)*m.pageSize+8:], 0x02)
		writeBack(t, path, data)
	}},
	{"both meta pages overwritten", func(t *testing.T, path string) {
		data := mustReadFile(t, path)
		m := readBoltMeta(t, data)
		clear(data[:2*m.pageSize])
		writeBack(t, path, data)
	}},
	{"element headers of a data page flipped", func(t *testing.T, path string) {
		data := mustReadFile(t, path)
		m := readBoltMeta(t, data)
		off := leafPageWith(t, data, m, `"waves"`)
		for i := off + 16; i < off+16+4*16; i++ {
			data[i] ^= 0xFF
		}
		writeBack(t, path, data)
	}},
	{"a branch page pointing past the end of the file", func(t *testing.T, path string) {
		// bbolt maps more than the file (a power of two): the page is in
		// the map but not in the file, and reading it faults (SIGBUS).
		data, m, _, off := runsRootBranch(t, path)
		// One page more makes the map twice the file: point into the gap.
		data = append(data, make([]byte, m.pageSize)...)
		binary.LittleEndian.PutUint64(data[off+16+8:], uint64(len(data)/m.pageSize+3))
		writeBack(t, path, data)
	}},
	{"a branch page pointing to itself", func(t *testing.T, path string) {
		data, _, root, off := runsRootBranch(t, path)
		binary.LittleEndian.PutUint64(data[off+16+8:], root)
		writeBack(t, path, data)
	}},
	{"a branch key that is not the first key of its page", func(t *testing.T, path string) {
		// bbolt's Tx.Check lets this pass (the child's keys are still above
		// it); its writer then freed a page twice and panicked in Commit.
		data, _, _, off := runsRootBranch(t, path)
		elem := off + 16 + 16 // the second element: pos, ksize
		key := elem + int(binary.LittleEndian.Uint32(data[elem:]))
		data[key+int(binary.LittleEndian.Uint32(data[elem+4:]))-1]-- // its last byte, lowered
		writeBack(t, path, data)
	}},
	{"bytes of a run flipped", func(t *testing.T, path string) {
		data := mustReadFile(t, path)
		m := readBoltMeta(t, data)
		off := leafPageWith(t, data, m, `"waves"`)
		at := off + bytes.Index(data[off:off+m.pageSize], []byte(`"waves"`))
		for i := at; i < at+12; i++ {
			data[i] ^= 0x5A
		}
		writeBack(t, path, data)
	}},
	{"a run of JSON null", putRaw(bucketRuns, nil, "null")},
	{"a run missing the step of a planned project", putRaw(bucketRuns, nil,
		`{"id":"%s","roots":["ops/base"],"status":"running","waves":[["ops/base"],["ops/ruby"]],"upstreams":{"ops/ruby":["ops/base"]},"steps":{"ops/base":{"state":"triggered","pipeline_id":5}}}`)},
	{"a run whose step is null", putRaw(bucketRuns, nil,
		`{"id":"%s","roots":["ops/base"],"status":"running","waves":[["ops/base"]],"steps":{"ops/base":null}}`)},
	{"a run upstream outside the plan", putRaw(bucketRuns, nil,
		`{"id":"%s","roots":["ops/base"],"status":"running","waves":[["ops/base"]],"upstreams":{"ops/base":["ops/gone"]},"steps":{"ops/base":{"state":"waiting"}}}`)},
	{"a run that is a JSON list", putRaw(bucketRuns, nil, `["ops/base"]`)},
	{"an intent of the wrong shape", putRaw(bucketIntents, []byte("20261126-101500-a1b2c3d4\x00ops/ruby"), `{"run_id":7}`)},
	{"a pipeline key of 3 bytes", putRaw(bucketPipelines, []byte("abc"), "20261126-101500-a1b2c3d4")},
	{"an event that is not JSON", putRaw(bucketEvents, u64key(1), "{")},
	{"an empty digest", putRaw(bucketDigests, []byte("docker.io/library/debian:bookworm"), "")},
	{"a value where a bucket belongs", func(t *testing.T, path string) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			_, err := tx.Bucket(bucketRuns).CreateBucket([]byte("20261126-101500-a1b2c3d4"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}},
	{"not a bbolt file", func(t *testing.T, path string) {
		writeBack(t, path, bytes.Repeat([]byte("this is not a database\n"), 3000))
	}},
	{"random bytes", func(t *testing.T, path string) {
		data := make([]byte, 64<<10)
		rng := rand.NewChaCha8([32]byte{19})
		rng.Read(data)
		writeBack(t, path, data)
	}},
	{"a bbolt file of another program", func(t *testing.T, path string) {
		os.Remove(path)
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("members"))
			if err == nil {
				err = b.Put([]byte("m1"), []byte("etcd"))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}},
}

// putRaw stores a raw value in bucket through bbolt, so the file is sound
// for bbolt and only the value is wrong. A nil key is the key of one of
// the file's runs (and "%s" in value its id).
func putRaw(bucket, key []byte, value string) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			k := key
			if k == nil {
				k, _ = tx.Bucket(bucketRuns).Cursor().Last()
				k = bytes.Clone(k)
			}
			v := value
			if strings.Contains(v, "%s") {
				v = fmt.Sprintf(v, k)
			}
			return tx.Bucket(bucket).Put(k, []byte(v))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// runsRootBranch reads the state file at path and finds the root page of
// bucket runs, which must be a branch page: its id and offset in data.
func runsRootBranch(t *testing.T, path string) (data []byte, m boltMeta, root uint64, off int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error { root = uint64(tx.Bucket(bucketRuns).RootPage()); return nil })
	db.Close()
	data = mustReadFile(t, path)
	m = readBoltMeta(t, data)
	off = int(root) * m.pageSize
	if root == 0 || binary.LittleEndian.Uint16(data[off+8:]) != 0x01 {
		t.Fatalf("the root of bucket runs (page %d) is not a branch page", root)
	}
	return data, m, root, off
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeBack(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func truncateFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// fileState is what "left as it was" compares: content and metadata.
func fileState(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%x %v %d %d", sha256.Sum256(mustReadFile(t, path)), fi.Mode(), fi.Size(), st.Mtim.Nano())
}

// Every corruption is an error of type *StateCorruptError naming the
// file, for the read-write open (serve, trigger --follow, watch) and the
// read-only one (status --state, watch --dry-run), never a panic, and the
// file is left as it was.
func TestCorruptStateIsAnErrorAndLeftAsItWas(t *testing.T) {
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			path := busyState(t)
			c.do(t, path)
			before := fileState(t, path)
			for _, open := range []struct {
				name string
				do   func() (*Engine, error)
			}{
				{"NewEngine", func() (*Engine, error) { return NewEngine(EngineOptions{StatePath: path, API: newFakePipelines()}) }},
				{"OpenReadOnly", func() (*Engine, error) { return OpenReadOnly(path) }},
			} {
				e, err := open.do()
				if err == nil {
					// What the engine would do next on it: the first poll.
					perr := e.pollUnfinished(context.Background())
					e.Close()
					t.Fatalf("%s opened the corrupt state (poll: %v)", open.name, perr)
				}
				var corrupt *StateCorruptError
				if !errors.As(err, &corrupt) || corrupt.Path != path || !strings.Contains(err.Error(), path) {
					t.Errorf("%s: %v (%T), want a *StateCorruptError naming %s", open.name, err, err, path)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("%s: error of several lines: %q", open.name, err)
				}
				if after := fileState(t, path); after != before {
					t.Fatalf("%s changed the corrupt file: %s, was %s", open.name, after, before)
				}
			}
		})
	}
}

// The corruptions above must not be false alarms: the busy state as
// written opens, and a state file that is empty (a crash right after it
// was created) is a new one.
func TestSoundStateOpens(t *testing.T) {
	path := busyState(t)
	for range 2 { // the second open finds the freelist the first wrote
		e, err := NewEngine(EngineOptions{StatePath: path, API: newFakePipelines()})
		if err != nil {
			t.Fatalf("NewEngine on a sound state: %v", err)
		}
		runs, err := e.Runs(0)
		if err != nil || len(runs) != 41 {
			t.Errorf("runs: %d, %v; want 41", len(runs), err)
		}
		e.Close()
	}
	e, err := OpenReadOnly(path)
	if err != nil {
		t.Fatalf("OpenReadOnly on a sound state: %v", err)
	}
	e.Close()

	empty := filepath.Join(t.TempDir(), "empty.db")
	writeBack(t, empty, nil)
	if e, err = NewEngine(EngineOptions{StatePath: empty}); err != nil {
		t.Fatalf("NewEngine on an empty file: %v", err)
	}
	e.Close()
}

// The state file is opened for writing only when it is a regular file: a
// symbolic link planted where it goes (to a file root owns) is refused and
// the target not written, a FIFO does not block the open, a folder is
// refused.
func TestStateIsWrittenOnlyAsARegularFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	writeBack(t, target, []byte("root:x:0:0\n"))
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.db")
	if err := os.Symlink(filepath.Join(dir, "new-file"), dangling); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.db")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{link, dangling, fifo, dir} {
		e, err := NewEngine(EngineOptions{StatePath: path})
		if err == nil {
			e.Close()
			t.Errorf("NewEngine opened %s", path)
			continue
		}
		if !errors.Is(err, ErrStateNotRegular) || !strings.Contains(err.Error(), path) {
			t.Errorf("NewEngine(%s): %v, want ErrStateNotRegular naming the path", path, err)
		}
	}
	if got := string(mustReadFile(t, target)); got != "root:x:0:0\n" {
		t.Errorf("the link's target was written: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "new-file")); !os.IsNotExist(err) {
		t.Errorf("a file was created through the dangling link (%v)", err)
	}
	// Reading follows a link (status --state of a linked file is harmless)
	// but still never blocks on a FIFO.
	if e, err := OpenReadOnly(fifo); err == nil || !errors.Is(err, ErrStateNotRegular) {
		t.Errorf("OpenReadOnly of a FIFO: %v, want ErrStateNotRegular", err)
		if e != nil {
			e.Close()
		}
	}
}

// What `chain serve` says of a new state file after a corrupt one was moved
// aside: the old runs are forgotten, but the success of a pipeline one of
// them created (it carries the run id) starts a run below its project,
// under that id.
func TestANewStateContinuesBelowAPipelineOfAForgottenRun(t *testing.T) {
	graph := testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby")
	old := newEngineFixture(t, graph)
	old.pipeline("ops/base", 31, "success", hookOpts{})
	old.work()
	ruby := old.api.pipelineOf(t, "ops/ruby")
	old.engine.Close()

	fresh := newEngineFixture(t, graph)
	fresh.api = old.api
	fresh.engine.api = old.api
	if code := fresh.pipeline("ops/ruby", ruby.ID, "success", hookOpts{runID: ruby.RunID}); code != 200 {
		t.Fatalf("success of ruby: HTTP %d", code)
	}
	fresh.work()
	wantCreated(t, old.api, "ops/ruby", "ops/app")
	if run := fresh.onlyRun(); run.ID != ruby.RunID || !slices.Equal(run.Roots, []string{"ops/ruby"}) {
		t.Errorf("run %s at %v, want %s at ops/ruby", run.ID, run.Roots, ruby.RunID)
	}
}
