package chain

import (
	"slices"
	"strings"
	"testing"
)

func TestParseDepsFileReadsPathsAndComments(t *testing.T) {
	got, err := ParseDepsFile([]byte("# upstreams\n\n  g/base  \ng/sub/ruby # after a path\n\tg/base\n#g/nope\n   # indented comment\ng/x.y_z-1\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"g/base", "g/sub/ruby", "g/x.y_z-1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseDepsFileRejectsMalformedLinesNamingThem(t *testing.T) {
	cases := map[string]string{
		"g/base\ng/a g/b\n":    "line 2",
		"g//x\n":               "empty component",
		"g/base/\n":            "empty component",
		"/g/base\n":            "empty component",
		"g/../etc\n":           "starts with",
		"registry.io/g/b:1\n":  "character ':'",
		"g/base\n\ng/ü\n":      "line 3",
		"https://gitlab/g/b\n": "character ':'",
	}
	for input, want := range cases {
		_, err := ParseDepsFile([]byte(input))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ".gitlab-deps") {
			t.Errorf("%q: error %v, want one naming .gitlab-deps and %q", input, err, want)
		}
	}
}

func TestParseDepsFileEmptyMeansNoUpstreams(t *testing.T) {
	got, err := ParseDepsFile([]byte("# no upstreams on purpose\n"))
	if err != nil || len(got) != 0 {
		t.Errorf("got %q, %v", got, err)
	}
}
