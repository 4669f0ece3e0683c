package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// maxSecretBytes bounds what a secret file may hold: a token or a webhook
// secret is a line, not megabytes.
const maxSecretBytes = 64 << 10

// ReadSecretFile reads a secret (token, webhook secret, password) from path,
// with one trailing newline trimmed. Only a regular file is read (a FIFO
// nobody writes to would hang, a device never end): anything else is an
// error wrapping ErrWrongKind. The error names the file, never its content;
// PathError gives it the exit code of the rule.
func ReadSecretFile(path string) (string, error) {
	// O_NONBLOCK: opening a FIFO without a writer returns at once; it is
	// refused below by its mode.
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err // the path is named once, below
		}
		return "", fmt.Errorf("secret file %s: %w", path, err)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return "", fmt.Errorf("secret file %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("secret file %w", &WrongKindError{Path: path, Kind: KindOf(info.Mode()), Want: "a regular file"})
	}
	data, err := io.ReadAll(io.LimitReader(file, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("secret file %s: %w", path, err)
	}
	if len(data) > maxSecretBytes {
		return "", fmt.Errorf("secret file %s: more than %d bytes, expected the secret on its first line", path, maxSecretBytes)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return "", fmt.Errorf("secret file %s: empty, expected the secret on its first line", path)
	}
	return string(data), nil
}

// SecretFlag reads the secret file named by flag (--token-file,
// --webhook-secret-file) under the rule for paths named on the command line:
// a missing file or one of the wrong kind is a usage error, one that cannot
// be read a failure. An empty path gives "" and no error.
func SecretFlag(flag, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	secret, err := ReadSecretFile(path)
	if err != nil {
		return "", PathError(flag, err)
	}
	return secret, nil
}
