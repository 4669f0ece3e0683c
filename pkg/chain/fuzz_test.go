package chain

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

var warningLineRE = regexp.MustCompile(`^line [0-9]+: `)

// FuzzParseContainerfile: any input parses without panic; every base image
// is non-empty, neither scratch nor an earlier stage; every warning names
// its line.
func FuzzParseContainerfile(f *testing.F) {
	for _, seed := range []string{
		"FROM debian:bookworm\n",
		"ARG T=1\nFROM --platform=$BUILDPLATFORM golang:${T:-1.22} AS build\nFROM build\nFROM scratch\n",
		"# escape=`\nFROM `\n alpine\n",
		"FROM \\\n# c\n  alpine \\\n AS x\nRUN <<EOF\nFROM evil\nEOF\n",
		"ARG A B=\"x y\" C='z'\nFROM $A${B:+q}${C-d}\n",
		"FROM registry.example.com:5050/g/p@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cf := ParseContainerfile(data)
		for _, b := range cf.Bases {
			if b.Ref == "" || strings.EqualFold(b.Ref, "scratch") || b.Line < 1 {
				t.Fatalf("bad base %+v", b)
			}
		}
		for _, w := range cf.Warnings {
			if !warningLineRE.MatchString(w) {
				t.Fatalf("warning without line: %q", w)
			}
		}
	})
}

// FuzzParseDepsFile: what parses is a list of valid, unique paths without
// comments or blanks, and writing them back one a line gives the same list.
func FuzzParseDepsFile(f *testing.F) {
	for _, seed := range []string{
		"g/base\n",
		"# c\n\n  g/sub/ruby # after\ng/base\r\ng/base\n",
		"g/a g/b\n",
		"g//x\n",
		"\xef\xbb\xbfg/x.y_z-1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		paths, err := ParseDepsFile(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), ".gitlab-deps") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, p := range paths {
			if ValidateProjectPath(p) != nil || strings.ContainsAny(p, "# \t\r\n") || seen[p] {
				t.Fatalf("bad path %q in %q", p, paths)
			}
			seen[p] = true
		}
		again, err := ParseDepsFile([]byte(strings.Join(paths, "\n")))
		if err != nil || !slices.Equal(again, paths) {
			t.Fatalf("round trip %q -> %q, %v", paths, again, err)
		}
	})
}

// FuzzParseImageRef: a reference that parses is normalised once and for
// all: its string parses to the same reference.
func FuzzParseImageRef(f *testing.F) {
	for _, seed := range []string{"debian", "debian:bookworm", "gitlab.example.com:5050/g/p/img:v1", "localhost/x@sha256:" + strings.Repeat("a", 64), "[::1]:5000/a", "Reg.IO/a/b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseImageRef(s)
		if err != nil {
			return
		}
		again, err := ParseImageRef(ref.String())
		if err != nil || again != ref {
			t.Fatalf("%q -> %s -> %+v, %v", s, ref, again, err)
		}
	})
}
