package chain

import (
	"fmt"
	"regexp"
	"strings"
)

// DockerHub is the registry host that image references without a host name
// refer to. Its repositories of one component live under "library/".
const DockerHub = "docker.io"

// ImageRef is a parsed container image reference
// ([host[:port]/]path[:tag][@digest]), normalised the way Docker does:
// a reference without a registry host is on docker.io, a Docker Hub
// repository of one component is under library/, the host name is lower
// case, and a reference with neither tag nor digest has the tag "latest".
type ImageRef struct {
	Host   string // registry host, with ":port" when one was given
	Path   string // repository path, e.g. "group/project/name"
	Tag    string // "" when the reference is pinned by digest only
	Digest string // "sha256:..." or ""
}

// String is the normalised reference, e.g. docker.io/library/debian:bookworm.
func (r ImageRef) String() string {
	s := r.Host + "/" + r.Path
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Repository is the reference without tag and digest.
func (r ImageRef) Repository() string { return r.Host + "/" + r.Path }

var (
	// The grammar of github.com/distribution/reference, written out.
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	tagRE           = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	// Docker also validates the digest (go-digest): a known algorithm and
	// its length in lower-case hex.
	digestRE = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`)
	hostRE   = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$`)
)

// ParseImageRef parses and normalises an image reference as written after
// FROM. The error says which part is malformed.
func ParseImageRef(s string) (ImageRef, error) {
	var ref ImageRef
	if s == "" {
		return ref, fmt.Errorf("empty image reference")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return ref, fmt.Errorf("image reference %q: contains white space", s)
	}
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		ref.Digest = rest[i+1:]
		rest = rest[:i]
		if !digestRE.MatchString(ref.Digest) {
			return ImageRef{}, fmt.Errorf("image reference %q: malformed digest %q", s, ref.Digest)
		}
	}
	// A tag is after the last colon that follows the last slash; a colon
	// before a slash belongs to host:port.
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && i > strings.LastIndexByte(rest, '/') {
		ref.Tag = rest[i+1:]
		rest = rest[:i]
		if !tagRE.MatchString(ref.Tag) {
			return ImageRef{}, fmt.Errorf("image reference %q: malformed tag %q", s, ref.Tag)
		}
	}
	host, path := "", rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		first := rest[:i]
		// Docker's rule: the first component is a registry host when it
		// contains a dot or a colon, or is localhost.
		if strings.ContainsAny(first, ".:") || first == "localhost" || (first != strings.ToLower(first)) {
			host, path = first, rest[i+1:]
		}
	}
	if host == "" {
		host = DockerHub
	} else {
		if !hostRE.MatchString(host) {
			return ImageRef{}, fmt.Errorf("image reference %q: malformed registry host %q", s, host)
		}
		// Host names are case-insensitive; lower-case only those that stay
		// recognisable as hosts (an upper-case first component without a
		// dot is a host only because of its case).
		if lower := strings.ToLower(host); strings.ContainsAny(lower, ".:") || lower == "localhost" {
			host = lower
		}
		switch host {
		case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
			host = DockerHub
		}
	}
	if path == "" {
		return ImageRef{}, fmt.Errorf("image reference %q: no repository path", s)
	}
	for _, component := range strings.Split(path, "/") {
		if !pathComponentRE.MatchString(component) {
			return ImageRef{}, fmt.Errorf("image reference %q: repository path %q: expected lower-case components of letters, digits and separators", s, path)
		}
	}
	if host == DockerHub && !strings.Contains(path, "/") {
		path = "library/" + path
	}
	ref.Host, ref.Path = host, path
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = "latest"
	}
	return ref, nil
}
