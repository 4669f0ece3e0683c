package cli

import (
	"bytes"
	"fmt"
	"os"
)

// ReadSecretFile reads a secret (token, webhook secret, password) from path,
// with one trailing newline trimmed. The error names the file, never its
// content.
func ReadSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret file %s: %w", path, err)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return "", fmt.Errorf("secret file %s: empty, expected the secret on its first line", path)
	}
	return string(data), nil
}
