package chain

import (
	"strings"
	"testing"
)

func TestParseImageRefNormalisesLikeDocker(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	cases := []struct{ in, want, host, path string }{
		{"debian", "docker.io/library/debian:latest", "docker.io", "library/debian"},
		{"debian:bookworm", "docker.io/library/debian:bookworm", "docker.io", "library/debian"},
		{"bitnami/redis:7", "docker.io/bitnami/redis:7", "docker.io", "bitnami/redis"},
		{"docker.io/debian", "docker.io/library/debian:latest", "docker.io", "library/debian"},
		{"index.docker.io/library/debian:12", "docker.io/library/debian:12", "docker.io", "library/debian"},
		{"debian@" + digest, "docker.io/library/debian@" + digest, "docker.io", "library/debian"},
		{"debian:12@" + digest, "docker.io/library/debian:12@" + digest, "docker.io", "library/debian"},
		{"Registry.Example.com/g/base", "registry.example.com/g/base:latest", "registry.example.com", "g/base"},
		{"gitlab.example.com:5050/g/sub/app/runtime:v1", "gitlab.example.com:5050/g/sub/app/runtime:v1", "gitlab.example.com:5050", "g/sub/app/runtime"},
		{"localhost/app", "localhost/app:latest", "localhost", "app"},
		{"localhost:5000/app:dev", "localhost:5000/app:dev", "localhost:5000", "app"},
		{"[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000", "app"},
	}
	for _, tc := range cases {
		ref, err := ParseImageRef(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if ref.String() != tc.want || ref.Host != tc.host || ref.Path != tc.path {
			t.Errorf("%s: got %s (host %s, path %s), want %s (host %s, path %s)", tc.in, ref, ref.Host, ref.Path, tc.want, tc.host, tc.path)
		}
	}
}

func TestParseImageRefRejectsMalformed(t *testing.T) {
	for _, in := range []string{"", "Debian", "debian:", "debian:bad tag", "debian@sha256:short", "debian@sha256:" + strings.Repeat("a", 32), "debian@sha256:" + strings.Repeat("g", 64), "debian@md5:" + strings.Repeat("a", 32), "reg.example.com/", "a//b", "-x/y", "host:port:bad/x"} {
		if ref, err := ParseImageRef(in); err == nil {
			t.Errorf("%q accepted as %s", in, ref)
		}
	}
}
