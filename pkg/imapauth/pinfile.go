package imapauth

import (
	"bytes"
	"errors"
	"fmt"
)

// A pin file (Config.PinFile) holds one pin a line, as ParsePin reads it;
// blank lines are skipped and a # starts a comment that runs to the end of
// the line (base64 has no #):
//
//	# imap.example.org, key of 2026 and the one that replaces it
//	sha256//9qGGs7kQt83e6JQh6HFPTnYUMJzu2qR1YGPRO0AukD4=
//	rRq0XjRODa6vnR+88sbFFo11e8CfZI5jQcUKDl7Nrc8=   # the next key
//
// A daemon re-reads it on SIGHUP (see Server.Run), so that pins can be
// rotated without a restart or a new command line.

const (
	// maxPinFile bounds a pin file: a few pins with their comments take
	// a few hundred bytes.
	maxPinFile = 64 << 10
	// maxPins bounds the pins in force: two or three cover a rotation.
	maxPins = 64
)

// errNoPins is a pin file without a pin. Taking it for "pin nothing"
// would accept any key: a truncated file must not turn pinning off.
var errNoPins = errors.New("no pin in the file, expected one sha256//BASE64 a line")

// PinFileError is a pin file (Config.PinFile) that cannot be used. Like
// CAFileError, it wraps fs.ErrNotExist when the file is missing and
// ErrNotRegularFile when the path names something else than a file.
type PinFileError struct {
	Path string
	Err  error
}

func (e *PinFileError) Error() string { return fmt.Sprintf("Config.PinFile %s: %v", e.Path, e.Err) }
func (e *PinFileError) Unwrap() error { return e.Err }

// readPinFile reads and parses the pin file at path.
func readPinFile(path string) ([]Pin, error) {
	data, err := readRegularFile(path, maxPinFile, "a file of pins, one sha256//BASE64 a line")
	if errors.Is(err, errFileTooLarge) {
		err = fmt.Errorf("larger than %d KiB, expected a few pins", maxPinFile>>10)
	}
	if err == nil {
		var pins []Pin
		if pins, err = parsePinFile(data); err == nil {
			return pins, nil
		}
	}
	return nil, &PinFileError{Path: path, Err: err}
}

// parsePinFile parses the content of a pin file. Its errors are one line
// that names the line at fault.
func parsePinFile(data []byte) ([]Pin, error) {
	var pins []Pin
	for number, line := range bytes.Split(data, []byte("\n")) {
		if comment := bytes.IndexByte(line, '#'); comment >= 0 {
			line = line[:comment]
		}
		line = bytes.Trim(line, " \t\r")
		if len(line) == 0 {
			continue
		}
		pin, err := ParsePin(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", number+1, err)
		}
		if len(pins) == maxPins {
			return nil, fmt.Errorf("line %d: more than %d pins, expected a few", number+1, maxPins)
		}
		pins = append(pins, pin)
	}
	if len(pins) == 0 {
		return nil, errNoPins
	}
	return pins, nil
}
