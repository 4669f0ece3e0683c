package pygrubfix

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// PatchPlan is what `opsctl pygrub patch` would change: one entry per
// pygrub parser file found on the host.
type PatchPlan struct {
	Files []FilePatch
}

// FilePatch is the patch of one file.
type FilePatch struct {
	Path    string
	Old     string
	New     string
	Changes []string // what is changed, in words; empty when up to date
	// Backup is where Apply kept the original ("" before Apply, or when
	// the file was up to date).
	Backup string

	write *FileWrite // the file, as read; its folder, held open
}

// Close releases the files the plan holds open.
func (p *PatchPlan) Close() error {
	for _, f := range p.Files {
		if f.write != nil {
			f.write.Close()
		}
	}
	return nil
}

// Needed reports whether any file needs a change.
func (p *PatchPlan) Needed() bool {
	for _, f := range p.Files {
		if len(f.Changes) > 0 {
			return true
		}
	}
	return false
}

// Diff is the unified diff of the whole plan.
func (p *PatchPlan) Diff() string {
	var b strings.Builder
	for _, f := range p.Files {
		b.WriteString(UnifiedDiff(f.Path, f.Path, f.Old, f.New))
	}
	return b.String()
}

// RefusalError is a parser file whose code is not what the patcher knows:
// it changes nothing and shows the line.
type RefusalError struct {
	Path string
	Line int
	Text string
	Why  string
}

func (e *RefusalError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s, not patching: %s", e.Path, e.Line, e.Why, strings.TrimSpace(e.Text))
	}
	return fmt.Sprintf("%s: %s, not patching", e.Path, e.Why)
}

// DefaultPygrubs are where distributions install pygrub.
var DefaultPygrubs = []string{
	"/usr/lib/xen-*/bin/pygrub",
	"/usr/lib/xen-default/bin/pygrub",
	"/usr/lib/xen/bin/pygrub",
	"/usr/lib64/xen/bin/pygrub",
	"/usr/bin/pygrub",
	"/usr/local/bin/pygrub",
	"/usr/local/lib/xen/bin/pygrub",
}

// FindParsers returns the grub parser files of the pygrub at pygrub (a
// pygrub script, a GrubConf.py, or "" to search the usual places): the
// GrubConf.py beside the script (Debian's lib/python/grub) or on the
// distribution's python path, and the script itself when it holds the
// menuentry regex. Symlinks are resolved and duplicates dropped.
func FindParsers(pygrub string) ([]string, error) {
	var scripts []string
	if pygrub != "" {
		if err := statHostFile(pygrub); err != nil {
			return nil, namedInput(pygrub, err, "a pygrub script or a GrubConf.py")
		}
		if filepath.Base(pygrub) == "GrubConf.py" {
			// Patch the file itself: renaming over a symlink would replace
			// the link and leave the file it points to unpatched.
			real, err := filepath.EvalSymlinks(pygrub)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", pygrub, err)
			}
			return []string{real}, nil
		}
		scripts = []string{pygrub}
	} else {
		for _, pattern := range DefaultPygrubs {
			matches, _ := filepath.Glob(pattern)
			scripts = append(scripts, matches...)
		}
		if len(scripts) == 0 {
			return nil, fmt.Errorf("no pygrub found in %s (give FindParsers.pygrub PATH)", strings.Join(DefaultPygrubs, ", "))
		}
	}
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		real, err := filepath.EvalSymlinks(p)
		if err != nil || seen[real] {
			return
		}
		seen[real] = true
		out = append(out, real)
	}
	for _, script := range scripts {
		real, err := filepath.EvalSymlinks(script)
		if err != nil {
			continue
		}
		data, err := readHostFile(real, maxParserSize, false)
		if err != nil {
			return nil, err
		}
		if menuentryLine.Match(data) {
			add(real)
		}
		for _, c := range grubConfCandidates(real) {
			if _, err := os.Stat(c); err == nil {
				add(c)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no GrubConf.py found for %s", strings.Join(scripts, ", "))
	}
	sort.Strings(out)
	return out, nil
}

// grubConfCandidates are the places of the grub module of a pygrub script.
func grubConfCandidates(script string) []string {
	dir := filepath.Dir(script)
	c := []string{
		filepath.Join(dir, "../lib/python/grub/GrubConf.py"),
		filepath.Join(dir, "grub/GrubConf.py"),
	}
	for _, pattern := range []string{
		"/usr/lib/python3/dist-packages/grub/GrubConf.py",
		"/usr/lib/python3*/site-packages/grub/GrubConf.py",
		"/usr/lib64/python3*/site-packages/grub/GrubConf.py",
		"/usr/lib/python2*/dist-packages/grub/GrubConf.py",
		"/usr/lib/python2*/site-packages/grub/GrubConf.py",
		"/usr/lib64/python2*/site-packages/grub/GrubConf.py",
		"/usr/local/lib/python*/*-packages/grub/GrubConf.py",
	} {
		matches, _ := filepath.Glob(pattern)
		c = append(c, matches...)
	}
	for i := range c {
		c[i] = filepath.Clean(c[i])
	}
	return c
}

var (
	// menuentryLine finds the line of the title regex.
	menuentryLine = regexp.MustCompile(`(?m)^.*re\.match\(\s*r?['"]\^menuentry.*$`)
	greedyTitle   = `["\'](.*)["\'] (.*){`
	fixedTitle    = `["\'](.*?)["\'] (.*){`
	linuxCommand  = regexp.MustCompile(`(?m)^([ \t]*)'linux':[ \t]*'kernel',[ \t]*$`)
	initrdCommand = regexp.MustCompile(`(?m)^([ \t]*)'initrd':[ \t]*'initrd',[ \t]*$`)
	// A dictionary entry for linux16 or initrd16 on a line of code, not
	// a mention in a comment.
	linux16Entry  = regexp.MustCompile(`(?m)^[^#\n]*'linux16'[ \t]*:`)
	initrd16Entry = regexp.MustCompile(`(?m)^[^#\n]*'initrd16'[ \t]*:`)
)

// PlanPatch reads each file and works out its patch, or refuses. The plan
// holds the files open until Close: Apply replaces the very files read.
// A file that is not a regular file, or is over 4 MiB, is refused.
func PlanPatch(paths []string) (*PatchPlan, error) {
	plan := &PatchPlan{}
	for _, path := range paths {
		fp, err := planFilePatch(path)
		if err != nil {
			plan.Close()
			return nil, err
		}
		plan.Files = append(plan.Files, fp)
	}
	return plan, nil
}

func planFilePatch(path string) (FilePatch, error) {
	// The path was found (FindParsers resolved its symlinks), not named:
	// a folder or file that is not what it should be is a failure here,
	// not an InputError.
	dir, err := openFolder(filepath.Dir(path))
	if err != nil {
		return FilePatch{}, err
	}
	w, err := planWriteIn(dir, filepath.Base(path), path)
	if err != nil {
		return FilePatch{}, err
	}
	if w.old == nil {
		w.Close()
		return FilePatch{}, fmt.Errorf("%s: no such file", path)
	}
	data, err := readAll(io.NewSectionReader(w.old, 0, maxParserSize+1), path, w.oldStat.Size, maxParserSize, false)
	if err != nil {
		w.Close()
		return FilePatch{}, err
	}
	fp, err := patchSource(path, string(data))
	if err != nil {
		w.Close()
		return FilePatch{}, err
	}
	fp.write = w
	return fp, nil
}

func lineOf(src string, offset int) int { return strings.Count(src[:offset], "\n") + 1 }

// patchSource patches one file's text.
func patchSource(path, src string) (FilePatch, error) {
	fp := FilePatch{Path: path, Old: src, New: src}
	locs := menuentryLine.FindAllStringIndex(src, -1)
	isGrubConf := strings.Contains(src, "class Grub2Image")
	if len(locs) == 0 {
		if isGrubConf {
			return fp, &RefusalError{Path: path, Why: "no menuentry regex found in the grub2 parser"}
		}
		return fp, nil
	}
	// Title regex: greedy -> non-greedy.
	for i := len(locs) - 1; i >= 0; i-- {
		start, end := locs[i][0], locs[i][1]
		line := src[start:end]
		switch {
		case strings.Contains(line, fixedTitle):
		case strings.Contains(line, greedyTitle):
			fixed := strings.Replace(line, greedyTitle, fixedTitle, 1)
			fp.New = fp.New[:start] + fixed + fp.New[end:]
			fp.Changes = append(fp.Changes, fmt.Sprintf("line %d: non-greedy menuentry title (.*) -> (.*?)", lineOf(src, start)))
		default:
			return fp, &RefusalError{Path: path, Line: lineOf(src, start), Text: line, Why: "unexpected menuentry regex"}
		}
	}
	if !isGrubConf {
		return fp, nil
	}
	// linux16/initrd16 in Grub2Image.commands.
	for _, add := range []struct {
		re       *regexp.Regexp
		anchor   string
		known    string
		present  *regexp.Regexp
		newEntry string
	}{
		{linuxCommand, "'linux': 'kernel',", "'linux16'", linux16Entry, "'linux16': 'kernel',"},
		{initrdCommand, "'initrd': 'initrd',", "'initrd16'", initrd16Entry, "'initrd16': 'initrd',"},
	} {
		if add.present.MatchString(fp.New) {
			continue
		}
		locs := add.re.FindAllStringSubmatchIndex(fp.New, -1)
		if len(locs) != 1 {
			return fp, &RefusalError{Path: path, Why: fmt.Sprintf("expected one line %s in Grub2Image.commands to add %s after, found %d", add.anchor, add.known, len(locs))}
		}
		end := locs[0][1]
		indent := fp.New[locs[0][2]:locs[0][3]]
		fp.Changes = append(fp.Changes, fmt.Sprintf("line %d: add %s", lineOf(fp.New, end)+1, add.newEntry))
		fp.New = fp.New[:end] + "\n" + indent + add.newEntry + fp.New[end:]
	}
	return fp, nil
}

// Apply writes every changed file: the original is kept as PATH.orig (or
// PATH.orig.N when that exists), then the new text replaces it through a
// temporary file, with its mode, owner and extended attributes (see
// FileWrite). It returns the backups made, and sets each file's Backup.
func (p *PatchPlan) Apply() ([]string, error) {
	var backups []string
	for i := range p.Files {
		f := &p.Files[i]
		if len(f.Changes) == 0 {
			continue
		}
		// Edited in place since it was read: the patch is for other text.
		cur, err := readAll(io.NewSectionReader(f.write.old, 0, maxParserSize+1), f.Path, 0, maxParserSize, false)
		if err != nil {
			return backups, err
		}
		if string(cur) != f.Old {
			return backups, fmt.Errorf("%s changed since it was read; run the patch again", f.Path)
		}
		if err := f.write.keepOld(); err != nil {
			return backups, err
		}
		backup, err := f.write.Apply([]byte(f.New))
		if err != nil {
			return backups, err
		}
		f.Backup = backup
		backups = append(backups, backup)
	}
	return backups, nil
}
