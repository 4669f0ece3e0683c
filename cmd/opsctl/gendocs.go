package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/cli"
)

type genDocsOptions struct {
	IO             *cli.IOStreams
	Getenv         func(string) string
	ManDir         string
	CompletionsDir string
	Version        string
}

// newCmdGenDocs is hidden: the packaging (make install, make deb) uses it to
// write man pages and shell completions generated from the command tree, so
// they never drift from the binary.
func newCmdGenDocs(f *cli.Factory) *cobra.Command {
	opts := &genDocsOptions{IO: f.IO, Getenv: f.Getenv, Version: f.Version}
	cmd := &cobra.Command{
		Use:   "gen-docs --man DIR --completions DIR",
		Short: "Write man pages and shell completions (used by packaging)",
		Long: `Write a section 1 man page for every command, and the bash, zsh and fish
completion scripts. DIR is created when its parent folder exists. A file
there is replaced (written beside it, then renamed); a symbolic link or
anything else that is not a regular file is refused. SOURCE_DATE_EPOCH sets
the date of the pages (reproducible builds).`,
		Hidden:  true,
		Example: `  opsctl gen-docs --man build/man --completions build/completions`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.ManDir == "" && opts.CompletionsDir == "" {
				return cli.Usagef("gen-docs: expected --man DIR and/or --completions DIR")
			}
			return runGenDocs(opts, cmd.Root())
		},
	}
	cmd.Flags().StringVar(&opts.ManDir, "man", "", "write section 1 man pages into `DIR`")
	cmd.Flags().StringVar(&opts.CompletionsDir, "completions", "", "write bash, zsh and fish completions into `DIR`")
	return cmd
}

func runGenDocs(opts *genDocsOptions, root *cobra.Command) error {
	files := map[string]map[string][]byte{} // flag -> file name -> content
	if opts.ManDir != "" {
		info, err := manPageInfoFrom(opts)
		if err != nil {
			return err
		}
		root.InitDefaultHelpFlag() // listed on opsctl(1)
		pages := map[string][]byte{}
		for _, cmd := range manPageCommands(root) {
			var page bytes.Buffer
			if err := writeManPage(&page, cmd, info); err != nil {
				return fmt.Errorf("man page of %s: %w", cmd.CommandPath(), err)
			}
			pages[manPageName(cmd)+"."+info.Section] = page.Bytes()
		}
		files["--man"] = pages
	}
	if opts.CompletionsDir != "" {
		var bash, zsh, fish bytes.Buffer
		if err := root.GenBashCompletionV2(&bash, true); err != nil {
			return err
		}
		if err := root.GenZshCompletion(&zsh); err != nil {
			return err
		}
		if err := root.GenFishCompletion(&fish, true); err != nil {
			return err
		}
		files["--completions"] = map[string][]byte{"opsctl.bash": bash.Bytes(), "_opsctl": zsh.Bytes(), "opsctl.fish": fish.Bytes()}
	}
	for _, flag := range []string{"--man", "--completions"} {
		dir := opts.ManDir
		if flag == "--completions" {
			dir = opts.CompletionsDir
		}
		if files[flag] == nil {
			continue
		}
		if err := writeFilesInto(flag, dir, files[flag]); err != nil {
			return err
		}
	}
	return nil
}

// manPageInfoFrom dates the pages now, or at SOURCE_DATE_EPOCH for a
// reproducible build.
func manPageInfoFrom(opts *genDocsOptions) (manPageInfo, error) {
	date := time.Now()
	if epoch := opts.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		seconds, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return manPageInfo{}, cli.Usagef("SOURCE_DATE_EPOCH %q: expected seconds since 1970", epoch)
		}
		date = time.Unix(seconds, 0).UTC()
	}
	return manPageInfo{Date: date, Source: "opsctl " + opts.Version, Manual: "opsctl manual", Section: "1"}, nil
}

// writeFilesInto writes files into dir (given as flag), creating dir when
// its parent exists. Everything goes through a descriptor of dir opened
// without following a symbolic link, so a link planted in the path or at a
// file's name is never written through, even when run as root.
func writeFilesInto(flag, dir string, files map[string][]byte) error {
	if err := cli.NeedParentDir(flag, dir); err != nil {
		return err
	}
	if err := unix.Mkdir(dir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return cli.PathError(flag, &fs.PathError{Op: "mkdir", Path: dir, Err: err})
	}
	dirFD, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return cli.PathError(flag, &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(dirFD)
	for name, data := range files {
		if err := writeFileAt(dirFD, dir, name, data); err != nil {
			return cli.PathError(flag, err)
		}
	}
	return nil
}

// writeFileAt replaces name in the folder dirFD (dir) by a file holding
// data, mode 0644: written to a new temporary file beside it, then renamed
// over it, so a reader never sees half a page. A name that is there and not
// a regular file is refused, never replaced.
func writeFileAt(dirFD int, dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &cli.WrongKindError{Path: path, Kind: cli.KindOf(fileModeOf(st.Mode)), Want: "a regular file"}
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return err
	}
	tmp := "." + name + "." + hex.EncodeToString(suffix)
	fd, err := unix.Openat(dirFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &fs.PathError{Op: "create", Path: filepath.Join(dir, tmp), Err: err}
	}
	file := os.NewFile(uintptr(fd), filepath.Join(dir, tmp))
	_, err = file.Write(data)
	if err == nil {
		err = file.Chmod(0o644) // on the descriptor: whatever the umask
	}
	if closeErr := file.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = unix.Renameat(dirFD, tmp, dirFD, name)
	}
	if err != nil {
		_ = unix.Unlinkat(dirFD, tmp, 0)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// fileModeOf is the type bits of a stat mode as an fs.FileMode.
func fileModeOf(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return 0
}
