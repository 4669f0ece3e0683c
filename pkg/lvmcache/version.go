package lvmcache

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
)

// Version is an lvm2 release, like 2.03.16.
type Version struct {
	Major, Minor, Patch int
}

func (v Version) String() string { return fmt.Sprintf("%d.%02d.%02d", v.Major, v.Minor, v.Patch) }

// Less reports whether v is an older release than w.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

// OnlineResizeVersion is the first lvm2 release that resizes a cached LV in
// place (lvresize of the cache LV, without uncaching first).
var OnlineResizeVersion = Version{2, 3, 12}

// SupportsOnlineResize reports whether lvm2 v can resize a cached LV in place.
func (v Version) SupportsOnlineResize() bool { return !v.Less(OnlineResizeVersion) }

var lvmVersionLine = regexp.MustCompile(`(?m)^\s*LVM version:\s*(\d{1,4})\.(\d{1,4})\.(\d{1,4})`)

// ParseVersion reads the lvm2 release from the output of `lvm version`
// ("  LVM version:     2.03.16(2) (2022-05-18)").
func ParseVersion(out string) (Version, error) {
	m := lvmVersionLine.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("lvm version: no \"LVM version: X.Y.Z\" line in its output")
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, nil
}

// Version asks lvm2 for its release.
func (r *Runner) Version(ctx context.Context) (Version, error) {
	out, err := r.Run(ctx, "version")
	if err != nil {
		return Version{}, fmt.Errorf("lvm version: %w", err)
	}
	return ParseVersion(string(out))
}
