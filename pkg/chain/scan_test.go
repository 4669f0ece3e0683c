package chain

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func scanDir(t *testing.T, root string, registries *Registries) *Graph {
	t.Helper()
	g, err := (&Scanner{Source: &DirSource{Root: root}, Registries: registries}).Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestScanExamplesTree(t *testing.T) {
	g := scanDir(t, "../../examples/images", AnyRegistry())
	got := map[string]string{}
	for _, p := range g.Projects {
		got[p.Path] = p.Source + " " + strings.Join(p.Upstreams, ",") + " " + strings.Join(p.External, ",")
	}
	want := map[string]string{
		"ops/base":     "Containerfile  docker.io/library/debian:bookworm",
		"ops/ruby":     "Containerfile ops/base ",
		"ops/python":   "Dockerfile ops/base ",
		"ops/app":      "Containerfile ops/python,ops/ruby ",
		"ops/deploy":   ".gitlab-deps ops/app ",
		"tools/linter": "Containerfile  docker.io/library/golang:1.22-bookworm",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("graph:\n got %q\nwant %q", got, want)
	}
	if len(g.Cycles) != 0 || len(g.Warnings) != 0 {
		t.Errorf("cycles %q, warnings %q", g.Cycles, g.Warnings)
	}
}

func TestScanMapsRegistryImagesToLongestProjectPrefix(t *testing.T) {
	root := writeTree(t, map[string]string{
		"g/base/Containerfile":     "FROM debian\n",
		"g/base/sub/Containerfile": "FROM debian\n",
		"g/app/Containerfile": "FROM registry.example.com/g/base/sub/image:1 AS a\n" + // g/base/sub, not g/base
			"FROM registry.example.com/g/base:2 AS b\n" +
			"FROM other.example.com/g/base\n" + // not a project registry
			"FROM registry.example.com/g/unknown/x\n", // no such project
	})
	g := scanDir(t, root, NewRegistries("Registry.Example.com"))
	app := g.Project("g/app")
	if !reflect.DeepEqual(app.Upstreams, []string{"g/base", "g/base/sub"}) {
		t.Errorf("upstreams = %q", app.Upstreams)
	}
	wantExt := []string{"other.example.com/g/base:latest", "registry.example.com/g/unknown/x:latest"}
	if !reflect.DeepEqual(app.External, wantExt) {
		t.Errorf("external = %q, want %q", app.External, wantExt)
	}
	if len(g.Warnings) != 1 || !strings.Contains(g.Warnings[0], "g/app: Containerfile line 4: registry.example.com/g/unknown/x:latest is on a project registry") {
		t.Errorf("warnings = %q", g.Warnings)
	}
}

func TestScanPrecedenceDepsFileThenContainerfileThenDockerfile(t *testing.T) {
	root := writeTree(t, map[string]string{
		"g/a/Containerfile": "FROM debian\n",
		"g/b/.gitlab-deps":  "g/a\n",
		"g/b/Containerfile": "FROM r.io/g/c\n",
		"g/c/Containerfile": "FROM r.io/g/a\n",
		"g/c/Dockerfile":    "FROM r.io/g/b\n",
		"g/d/Dockerfile":    "FROM r.io/g/c\n",
		"g/e/README":        "not a project",
	})
	g := scanDir(t, root, NewRegistries("r.io"))
	got := map[string]string{}
	for _, p := range g.Projects {
		got[p.Path] = p.Source + ":" + strings.Join(p.Upstreams, ",")
	}
	want := map[string]string{"g/a": "Containerfile:", "g/b": ".gitlab-deps:g/a", "g/c": "Containerfile:g/a", "g/d": "Dockerfile:g/c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestScanWarnsInsteadOfDroppingSilently(t *testing.T) {
	root := writeTree(t, map[string]string{
		"g/a/Containerfile": "ARG BASE\nFROM ${BASE}\nFROM Not/Valid\n",
		"g/b/.gitlab-deps":  "g/missing\ng/b\n",
		"g/c/Containerfile": "FROM r.io/g/c/builder AS b\nFROM debian\n",
	})
	g := scanDir(t, root, NewRegistries("r.io"))
	want := []string{
		"g/a: Containerfile line 2: FROM ${BASE}: ARG BASE has no default",
		"g/a: Containerfile line 3: image reference",
		"g/b: .gitlab-deps names g/missing, which is not a project of the scan",
		"g/b: .gitlab-deps names the project itself",
		"g/c: Containerfile line 1: r.io/g/c/builder:latest is an image of the project itself",
	}
	if len(g.Warnings) != len(want) {
		t.Fatalf("warnings = %q", g.Warnings)
	}
	for i := range want {
		if !strings.HasPrefix(g.Warnings[i], want[i]) {
			t.Errorf("warning %d = %q, want prefix %q", i, g.Warnings[i], want[i])
		}
	}
}

func TestScanFailsOnMalformedDepsFileNamingProject(t *testing.T) {
	root := writeTree(t, map[string]string{"g/a/.gitlab-deps": "g/x\nnot a path\n"})
	_, err := (&Scanner{Source: &DirSource{Root: root}}).Scan(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "project g/a: .gitlab-deps line 2:") {
		t.Errorf("err = %v", err)
	}
}

func TestScanFailsOnUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads everything; use a folder where the file should be.
		root := writeTree(t, map[string]string{"g/a/Dockerfile": "FROM x\n"})
		os.Mkdir(filepath.Join(root, "g/a/Containerfile"), 0o755)
		_, err := (&Scanner{Source: &DirSource{Root: root}}).Scan(context.Background())
		if err == nil || !strings.Contains(err.Error(), "project g/a: read Containerfile") {
			t.Errorf("err = %v", err)
		}
		return
	}
	root := writeTree(t, map[string]string{"g/a/Containerfile": "FROM x\n"})
	os.Chmod(filepath.Join(root, "g/a/Containerfile"), 0)
	_, err := (&Scanner{Source: &DirSource{Root: root}}).Scan(context.Background())
	if err == nil || !strings.Contains(err.Error(), "project g/a: read Containerfile") {
		t.Errorf("err = %v", err)
	}
}

func TestDirSourceSkipsHiddenFolders(t *testing.T) {
	root := writeTree(t, map[string]string{".git/x/Containerfile": "FROM a\n", "g/.cache/Dockerfile": "FROM a\n", "g/a/Dockerfile": "FROM a\n"})
	g := scanDir(t, root, AnyRegistry())
	if len(g.Projects) != 1 || g.Projects[0].Path != "g/a" {
		t.Errorf("projects = %v", g.Projects)
	}
}

// GitLab's container registry lower-cases the project path: the image of
// project Infra/Base is registry.example.com/infra/base.
func TestScanMapsRegistryImagesOfMixedCaseProjects(t *testing.T) {
	root := writeTree(t, map[string]string{
		"Infra/Base/Containerfile": "FROM debian:bookworm\n",
		"Infra/App/Containerfile":  "FROM registry.example.com/infra/base/runtime:1\n",
	})
	g := scanDir(t, root, NewRegistries("registry.example.com"))
	app := g.Project("Infra/App")
	if !reflect.DeepEqual(app.Upstreams, []string{"Infra/Base"}) || len(app.External) != 0 {
		t.Errorf("Infra/App: upstreams %q, external %q; want upstream Infra/Base (warnings %q)", app.Upstreams, app.External, g.Warnings)
	}
}

// GitLab's project paths are case-insensitive (gitlab.example.com/infra/base
// is project Infra/Base): a .gitlab-deps line names the project whatever
// its case.
func TestScanResolvesDepsFileLinesWhateverTheirCase(t *testing.T) {
	root := writeTree(t, map[string]string{
		"Infra/Base/Containerfile": "FROM debian:bookworm\n",
		"Infra/App/.gitlab-deps":   "infra/base\n",
	})
	g := scanDir(t, root, AnyRegistry())
	if app := g.Project("Infra/App"); !reflect.DeepEqual(app.Upstreams, []string{"Infra/Base"}) {
		t.Errorf("Infra/App: upstreams %q, want Infra/Base (warnings %q)", app.Upstreams, g.Warnings)
	}
}

// --dir naming a symbolic link to the tree (/srv/images -> releases/42) is
// the tree: only links below it are not followed.
func TestDirSourceFollowsALinkGivenAsDir(t *testing.T) {
	root := writeTree(t, map[string]string{
		"ops/base/Containerfile": "FROM debian:bookworm\n",
		"ops/app/Containerfile":  "FROM registry.example.com/ops/base\n",
	})
	link := filepath.Join(t.TempDir(), "images")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	g := scanDir(t, link, AnyRegistry())
	if len(g.Projects) != 2 || g.Project("ops/app") == nil || !reflect.DeepEqual(g.Project("ops/app").Upstreams, []string{"ops/base"}) {
		t.Errorf("scan of a link to the tree: %d projects, want ops/base and ops/app", len(g.Projects))
	}
}
