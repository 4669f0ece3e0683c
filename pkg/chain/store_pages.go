package chain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkPages walks the page structure of a bbolt file by reading it, not
// through bbolt's memory map, before bbolt is let near it: bbolt trusts
// its pages, so a damaged file can make it read outside the file, build a
// slice of a length read from disk, or (a branch page naming itself or its
// parent) follow a cycle until memory runs out, which no recover() catches.
// After checkPages, every page bbolt reaches lies in the file, is reached
// once, and holds the elements it says it holds.
//
// The format is bbolt's (go.etcd.io/bbolt/internal/common): structs written
// in the machine's byte order.
func checkPages(f *os.File, size int64) error {
	w := &pageWalk{f: f, size: size}
	m, err := w.readMeta()
	if err != nil {
		return err
	}
	if int64(m.pgid)*int64(w.pageSize) > size || m.pgid < 2 {
		return fmt.Errorf("truncated: its pages end at byte %d, the file at byte %d", int64(m.pgid)*int64(w.pageSize), size)
	}
	w.highWater = m.pgid
	w.seen = make([]bool, m.pgid)
	w.seen[0], w.seen[1] = true, true
	if m.freelist != noFreelist {
		if err := w.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	_, err = w.walkTree(m.root, 0)
	return err
}

// The parts of bbolt's format the walk reads.
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elementSize      = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64; an inline bucket's page follows
	pageBranch       = 0x01
	pageLeaf         = 0x02
	pageFreelist     = 0x10
	leafBucket       = 0x01
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	metaSumOffset    = 56 // the checksum covers the meta up to itself
	noFreelist       = ^uint64(0)
	// maxDepth bounds tree and bucket nesting: a B+tree of 4 KiB pages
	// holding the whole address space is far shallower.
	maxDepth = 64
)

var native = binary.NativeEndian

type pageWalk struct {
	f         *os.File
	size      int64
	pageSize  int
	highWater uint64
	seen      []bool
}

type rawMeta struct {
	pageSize                   uint32
	root, freelist, pgid, txid uint64
}

// parseMeta reads a meta page's meta (after the page header) and reports
// whether it is valid as bbolt checks it: magic, version, checksum.
func parseMeta(b []byte) (rawMeta, bool) {
	if len(b) < metaSumOffset+8 {
		return rawMeta{}, false
	}
	h := fnv.New64a()
	h.Write(b[:metaSumOffset])
	ok := native.Uint32(b[0:]) == boltMagic && native.Uint32(b[4:]) == boltVersion && native.Uint64(b[metaSumOffset:]) == h.Sum64()
	return rawMeta{pageSize: native.Uint32(b[8:]), root: native.Uint64(b[16:]), freelist: native.Uint64(b[32:]),
		pgid: native.Uint64(b[40:]), txid: native.Uint64(b[48:])}, ok
}

// readMeta finds the page size and the meta bbolt will use, as bbolt does:
// the page size of the first valid meta (page 0, else page 1 at each
// possible page size), then the valid meta page of the highest txid.
func (w *pageWalk) readMeta() (rawMeta, error) {
	invalid := errors.New("not a bbolt database, or both of its meta pages are damaged")
	buf := make([]byte, pageHeaderSize+metaSumOffset+8)
	for i := -1; i <= 14 && w.pageSize == 0; i++ {
		pos := int64(0)
		if i >= 0 {
			pos = 1024 << i
		}
		if pos+int64(len(buf)) > w.size {
			break
		}
		if _, err := w.f.ReadAt(buf, pos); err != nil {
			return rawMeta{}, err
		}
		if m, ok := parseMeta(buf[pageHeaderSize:]); ok && m.pageSize >= 1024 && m.pageSize <= 1<<24 {
			w.pageSize = int(m.pageSize)
		}
	}
	if w.pageSize == 0 {
		return rawMeta{}, invalid
	}
	if w.size < 2*int64(w.pageSize) {
		return rawMeta{}, fmt.Errorf("file size too small %d", w.size)
	}
	var best rawMeta
	found := false
	for id := range int64(2) {
		if _, err := w.f.ReadAt(buf, id*int64(w.pageSize)); err != nil {
			return rawMeta{}, err
		}
		if m, ok := parseMeta(buf[pageHeaderSize:]); ok && (!found || m.txid > best.txid) {
			best, found = m, true
		}
	}
	if !found {
		return rawMeta{}, invalid
	}
	return best, nil
}

// page reads page id with its overflow pages, after checking that it lies
// in the file's pages, says it is id, and was not reached before.
func (w *pageWalk) page(id uint64) (flags uint16, count int, data []byte, err error) {
	if id < 2 || id >= w.highWater {
		return 0, 0, nil, fmt.Errorf("page %d is outside the file's pages (2 to %d)", id, w.highWater-1)
	}
	var header [pageHeaderSize]byte
	if _, err := w.f.ReadAt(header[:], int64(id)*int64(w.pageSize)); err != nil {
		return 0, 0, nil, err
	}
	if self := native.Uint64(header[0:]); self != id {
		return 0, 0, nil, fmt.Errorf("page %d identifies as page %d", id, self)
	}
	overflow := uint64(native.Uint32(header[12:]))
	if id+overflow >= w.highWater {
		return 0, 0, nil, fmt.Errorf("page %d runs %d pages past the file's pages", id, id+overflow-w.highWater+1)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p] {
			return 0, 0, nil, fmt.Errorf("page %d is reached twice (a cycle, or pages shared)", p)
		}
		w.seen[p] = true
	}
	data = make([]byte, (overflow+1)*uint64(w.pageSize))
	if _, err := w.f.ReadAt(data, int64(id)*int64(w.pageSize)); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, nil, err
	}
	return native.Uint16(header[8:]), int(native.Uint16(header[10:])), data, nil
}

func (w *pageWalk) checkFreelist(id uint64) error {
	flags, count, data, err := w.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags != pageFreelist {
		return fmt.Errorf("freelist page %d has flags %#x", id, flags)
	}
	ids := data[pageHeaderSize:]
	n := uint64(count)
	if count == 0xFFFF { // the count did not fit: it is the first element
		if len(ids) < 8 {
			return fmt.Errorf("freelist page %d is too short", id)
		}
		n, ids = native.Uint64(ids), ids[8:]
	}
	if n > uint64(len(ids)/8) {
		return fmt.Errorf("freelist page %d lists %d pages, room for %d", id, n, len(ids)/8)
	}
	for i := range n {
		if free := native.Uint64(ids[i*8:]); free < 2 || free >= w.highWater {
			return fmt.Errorf("freelist page %d lists page %d, outside the file's pages", id, free)
		}
	}
	return nil
}

// walkTree checks the B+tree of a bucket rooted at page id and returns the
// first key of the page. A branch element's key is the first key of its
// child: bbolt's writer relies on it (a key that differs made it free a
// page twice and panic in Commit), and its Tx.Check does not check it.
func (w *pageWalk) walkTree(id uint64, depth int) (firstKey []byte, err error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("pages nested more than %d deep", maxDepth)
	}
	flags, count, data, err := w.page(id)
	if err != nil {
		return nil, err
	}
	switch flags {
	case pageBranch:
		if count == 0 || pageHeaderSize+count*elementSize > len(data) {
			return nil, fmt.Errorf("branch page %d says %d elements, room for %d", id, count, (len(data)-pageHeaderSize)/elementSize)
		}
		for i := range count {
			at := pageHeaderSize + i*elementSize
			pos, ksize := uint64(native.Uint32(data[at:])), uint64(native.Uint32(data[at+4:]))
			if uint64(at)+pos+ksize > uint64(len(data)) {
				return nil, fmt.Errorf("branch page %d: element %d lies outside the page", id, i)
			}
			key := data[uint64(at)+pos : uint64(at)+pos+ksize]
			child := native.Uint64(data[at+8:])
			childKey, err := w.walkTree(child, depth+1)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(key, childKey) {
				return nil, fmt.Errorf("branch page %d: key %d is not the first key of page %d", id, i, child)
			}
			if i == 0 {
				firstKey = key
			}
		}
		return firstKey, nil
	case pageLeaf:
		return w.walkLeaf(fmt.Sprintf("leaf page %d", id), data, count, depth)
	}
	return nil, fmt.Errorf("page %d has flags %#x where a branch or leaf page belongs", id, flags)
}

// walkLeaf checks the elements of a leaf page (or of the page of an inline
// bucket, which lies in its parent's value) and the buckets they hold, and
// returns its first key.
func (w *pageWalk) walkLeaf(name string, data []byte, count, depth int) (firstKey []byte, err error) {
	if pageHeaderSize+count*elementSize > len(data) {
		return nil, fmt.Errorf("%s says %d elements, room for %d", name, count, (len(data)-pageHeaderSize)/elementSize)
	}
	for i := range count {
		at := pageHeaderSize + i*elementSize
		flags := native.Uint32(data[at:])
		pos, ksize, vsize := uint64(native.Uint32(data[at+4:])), uint64(native.Uint32(data[at+8:])), uint64(native.Uint32(data[at+12:]))
		end := uint64(at) + pos + ksize + vsize
		if end > uint64(len(data)) {
			return nil, fmt.Errorf("%s: element %d lies outside the page", name, i)
		}
		if i == 0 {
			firstKey = data[uint64(at)+pos : uint64(at)+pos+ksize]
		}
		if flags&leafBucket == 0 {
			continue
		}
		value := data[end-vsize : end]
		if len(value) < bucketHeaderSize {
			return nil, fmt.Errorf("%s: bucket %d has a value of %d bytes", name, i, len(value))
		}
		if root := native.Uint64(value); root != 0 {
			if _, err := w.walkTree(root, depth+1); err != nil {
				return nil, err
			}
			continue
		}
		inline := value[bucketHeaderSize:]
		if len(inline) < pageHeaderSize || native.Uint16(inline[8:]) != pageLeaf {
			return nil, fmt.Errorf("%s: inline bucket %d is not a leaf page", name, i)
		}
		if depth > maxDepth {
			return nil, fmt.Errorf("buckets nested more than %d deep", maxDepth)
		}
		if _, err := w.walkLeaf(name+" (inline bucket)", inline, int(native.Uint16(inline[10:])), depth+1); err != nil {
			return nil, err
		}
	}
	return firstKey, nil
}
