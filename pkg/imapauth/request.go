package imapauth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
)

// MaxRequestLine bounds one readsocket request line, newline included. It
// leaves room for a user name and a password of 2 KiB each.
const MaxRequestLine = 6000

// ParseRequest parses one readsocket request: base64(user) SP
// base64(password) LF (a CR before the LF is tolerated). Both fields are
// standard base64 as Exim's ${base64:...} writes it; the user must not be
// empty. Its errors describe the shape of the line, never its content.
func ParseRequest(line []byte) (user, password string, err error) {
	rest, ok := bytes.CutSuffix(line, []byte("\n"))
	if !ok {
		return "", "", errors.New("request not terminated by a newline")
	}
	rest = bytes.TrimSuffix(rest, []byte("\r"))
	userField, passField, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return "", "", errors.New("request has no space, expected base64(user) SP base64(password)")
	}
	if bytes.IndexByte(passField, ' ') >= 0 {
		return "", "", errors.New("request has more than two fields, expected base64(user) SP base64(password)")
	}
	userBytes, err := decodeField(userField)
	if err != nil {
		return "", "", fmt.Errorf("user field: %w", err)
	}
	if len(userBytes) == 0 {
		return "", "", errors.New("user field is empty")
	}
	passBytes, err := decodeField(passField)
	if err != nil {
		return "", "", fmt.Errorf("password field: %w", err)
	}
	return string(userBytes), string(passBytes), nil
}

func decodeField(field []byte) ([]byte, error) {
	// encoding/base64 skips CR and LF inside its input; a request may not.
	if i := bytes.IndexAny(field, "\r\n"); i >= 0 {
		return nil, fmt.Errorf("not standard base64 (line break at byte %d)", i)
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(field)))
	n, err := base64.StdEncoding.Strict().Decode(out, field)
	if err != nil {
		// The position is all the caller may learn: the byte could be part
		// of a password.
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			return nil, fmt.Errorf("not standard base64 (bad input at byte %d)", int64(corrupt))
		}
		return nil, errors.New("not standard base64")
	}
	return out[:n], nil
}
