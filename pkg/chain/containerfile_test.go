package chain

import (
	"slices"
	"strings"
	"testing"
)

func refsOf(cf *Containerfile) []string {
	var refs []string
	for _, b := range cf.Bases {
		refs = append(refs, b.Ref)
	}
	return refs
}

func TestParseContainerfileFindsBaseImages(t *testing.T) {
	cases := []struct {
		name     string
		file     string
		want     []string
		warnings []string // substrings, one per warning
	}{
		{"single FROM", "FROM debian:bookworm\nRUN true\n", []string{"debian:bookworm"}, nil},
		{"lower-case instruction", "from alpine:3.20\n", []string{"alpine:3.20"}, nil},
		{"multi-stage skips earlier stage names", `
FROM golang:1.22 AS build
RUN go build ./...
FROM build AS test
RUN go test ./...
FROM gcr.io/distroless/static-debian12
COPY --from=build /app /app
`, []string{"golang:1.22", "gcr.io/distroless/static-debian12"}, nil},
		{"stage names are case-insensitive", "FROM node:20 AS Builder\nFROM builder\n", []string{"node:20"}, nil},
		{"scratch is not an image", "FROM scratch\nCOPY x /\n", nil, nil},
		{"platform flag is skipped", "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM --platform=linux/arm64 alpine\n", []string{"golang:1.22", "alpine"}, nil},
		{"digest kept", "FROM debian@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
			[]string{"debian@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}, nil},
		{"registry with port", "FROM gitlab.example.com:5050/g/base:1.2\n", []string{"gitlab.example.com:5050/g/base:1.2"}, nil},
		{"ARG default in braces", "ARG TAG=bookworm\nFROM debian:${TAG}\n", []string{"debian:bookworm"}, nil},
		{"ARG default without braces", "ARG IMAGE=registry.example.com/g/base\nFROM $IMAGE\n", []string{"registry.example.com/g/base"}, nil},
		{"ARG without default uses the :- fallback", "ARG TAG\nFROM debian:${TAG:-bookworm}\n", []string{"debian:bookworm"}, nil},
		{"ARG with default ignores the :- fallback", "ARG TAG=trixie\nFROM debian:${TAG:-bookworm}\n", []string{"debian:trixie"}, nil},
		{"ARG :+ alternative", "ARG SLIM=1\nFROM debian:bookworm${SLIM:+-slim}\n", []string{"debian:bookworm-slim"}, nil},
		{"ARG referring to an earlier ARG", "ARG REGISTRY=registry.example.com\nARG BASE=${REGISTRY}/g/base\nFROM ${BASE}:latest\n", []string{"registry.example.com/g/base:latest"}, nil},
		{"several ARGs on one line, quoted", "ARG A=\"debian\" B='bookworm'\nFROM ${A}:${B}\n", []string{"debian:bookworm"}, nil},
		{"ARG without default is a warning", "ARG BASE\nFROM ${BASE}\n", nil, []string{"line 2: FROM ${BASE}: ARG BASE has no default"}},
		{"undeclared variable is a warning", "FROM $NOPE:1\n", nil, []string{"line 1: FROM $NOPE:1: $NOPE is not declared"}},
		{"ARG after FROM does not reach later FROMs", "FROM alpine AS a\nARG TAG=1\nFROM busybox:${TAG}\n", []string{"alpine"}, []string{"line 3"}},
		{"line continuation", "FROM \\\n  --platform=linux/amd64 \\\n  debian:bookworm \\\n  AS base\nFROM base\n", []string{"debian:bookworm"}, nil},
		{"continuation with trailing blanks", "FROM \\  \n debian\n", []string{"debian"}, nil},
		{"comment inside a continued instruction", "RUN apt-get update \\\n# a comment\n && true\nFROM alpine\n", []string{"alpine"}, nil},
		{"comments and indentation", "# FROM evil\n   # FROM evil2\n  FROM alpine # not a comment? no: part of the args\n", nil, []string{"line 3"}},
		{"escape directive", "# escape=`\nFROM `\n  mcr.microsoft.com/windows/servercore:ltsc2022\nRUN dir c:\\\n", []string{"mcr.microsoft.com/windows/servercore:ltsc2022"}, nil},
		{"directive after a comment is a comment", "# hello\n# escape=`\nFROM \\\n alpine\n", []string{"alpine"}, nil},
		{"an escaped escape at the end of a line is no continuation", "FROM alpine\nRUN dir C:\\\\\nFROM debian\n", []string{"alpine", "debian"}, nil},
		{"an escape alone on a line continues", "FROM \\\n\\\n alpine\n", []string{"alpine"}, nil},
		{"indented escape directive", "  # escape=`\nFROM `\n alpine\n", []string{"alpine"}, nil},
		{"syntax directive", "# syntax=docker/dockerfile:1.7\nFROM alpine\n", []string{"alpine"}, nil},
		{"heredoc body is not read", "FROM alpine\nRUN <<EOF\nFROM evil\nEOF\nFROM debian\n", []string{"alpine", "debian"}, nil},
		{"heredoc with dash and quotes", "FROM alpine\nCOPY <<-\"END\" /x\n\tFROM evil\n\tEND\nFROM busybox\n", []string{"alpine", "busybox"}, nil},
		{"shift operator is not a here-document", "FROM alpine\nRUN echo $((1<<X))\nFROM debian\n", []string{"alpine", "debian"}, nil},
		{"two here-documents", "FROM alpine\nRUN <<A cat - 3<<B\nFROM x\nA\nFROM y\nB\nFROM debian\n", []string{"alpine", "debian"}, nil},
		{"here-document word with a hyphen", "FROM alpine\nRUN python3 <<END-PY\nFROM evil\nEND-PY\nFROM debian\n", []string{"alpine", "debian"}, nil},
		{"here-document word with a dot, quoted", "FROM alpine\nCOPY <<'x.conf' /etc/x.conf\nFROM evil\nx.conf\nFROM debian\n", []string{"alpine", "debian"}, nil},
		{"ONBUILD RUN opens a here-document too", "FROM alpine\nONBUILD RUN <<EOF\nFROM evil\nEOF\nFROM debian\n", []string{"alpine", "debian"}, nil},
		{"<< inside quotes opens no here-document", "FROM alpine\nRUN echo \"a <<EOF b\"\nFROM debian\nRUN cat <<EOF\nhi\nEOF\n", []string{"alpine", "debian"}, nil},
		{"unterminated here-document is a warning, not a silent drop", "FROM alpine\nRUN cat <<EOF\nFROM debian\n", []string{"alpine", "debian"}, []string{"line 2: RUN: here-document not terminated"}},
		{"CRLF line ends", "ARG T=1\r\nFROM alpine:${T}\r\n", []string{"alpine:1"}, nil},
		{"FROM without image", "FROM\n", nil, []string{"line 1: FROM without an image"}},
		{"FROM with junk", "FROM a b c d\n", nil, []string{"expected FROM [--platform=...] IMAGE [AS NAME]"}},
		{"escaped dollar is literal", "FROM alpine\\$X\n", []string{"alpine$X"}, nil},
		{"required variable", "ARG T\nFROM alpine:${T:?required}\n", nil, []string{"ARG T is required"}},
		{"stage name via ARG", "ARG STAGE=build\nFROM golang AS build\nFROM ${STAGE}\n", []string{"golang"}, nil},
		{"BOM", "\xef\xbb\xbfFROM alpine\n", []string{"alpine"}, nil},
		{"no trailing newline in continuation", "FROM \\\nalpine \\", []string{"alpine"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cf := ParseContainerfile([]byte(tc.file))
			if got := refsOf(cf); !slices.Equal(got, tc.want) {
				t.Errorf("bases = %q, want %q", got, tc.want)
			}
			if len(cf.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings = %q, want %d matching %q", cf.Warnings, len(tc.warnings), tc.warnings)
			}
			for i, w := range tc.warnings {
				if !strings.Contains(cf.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, cf.Warnings[i], w)
				}
			}
		})
	}
}

func TestParseContainerfileReportsLineOfEachFrom(t *testing.T) {
	cf := ParseContainerfile([]byte("# c\n\nFROM a AS x\nRUN echo \\\n hi\nFROM \\\n b\n"))
	if len(cf.Bases) != 2 || cf.Bases[0].Line != 3 || cf.Bases[1].Line != 6 {
		t.Fatalf("bases = %+v, want lines 3 and 6", cf.Bases)
	}
}
