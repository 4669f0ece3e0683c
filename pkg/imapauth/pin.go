package imapauth

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// Pin is the SHA-256 hash of a certificate's SubjectPublicKeyInfo (its
// public key with the algorithm, DER-encoded): what curl's --pinnedpubkey
// takes as sha256//BASE64 and HPKP called pin-sha256, and what
//
//	openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
//	    openssl dgst -sha256 -binary | base64
//
// prints for a PEM certificate. A pin survives a renewal of the
// certificate that keeps its key, and a reissue by another CA; it breaks
// when the key changes.
type Pin [sha256.Size]byte

// pinPrefix is how curl marks a SHA-256 pin.
const pinPrefix = "sha256//"

// PinOf is the pin of cert's public key.
func PinOf(cert *x509.Certificate) Pin { return sha256.Sum256(cert.RawSubjectPublicKeyInfo) }

// String is the pin in curl's form, sha256//BASE64, which ParsePin reads
// back.
func (p Pin) String() string { return pinPrefix + base64.StdEncoding.EncodeToString(p[:]) }

// ParsePin reads one pin: the standard base64 of 32 bytes (44 characters,
// the last one "="), with or without curl's "sha256//" in front.
func ParsePin(s string) (Pin, error) {
	var pin Pin
	encoded := strings.TrimPrefix(s, pinPrefix)
	raw, err := base64.StdEncoding.Strict().DecodeString(encoded)
	// Base64 decoding skips line breaks; a pin holds none.
	if err != nil || len(raw) != len(pin) || strings.ContainsAny(encoded, "\r\n") {
		return Pin{}, fmt.Errorf("%s: %s", pinProblemValue(s), pinExpected)
	}
	copy(pin[:], raw)
	return pin, nil
}

const pinExpected = "expected the base64 of a SHA-256 hash (44 characters ending in =), as sha256//BASE64 or BASE64"

// pinProblemValue shows a value that is not a pin in an error: quoted,
// and cut short, for a value can be anything at all.
func pinProblemValue(s string) string {
	const shown = 64
	if len(s) > shown {
		return strconv.Quote(s[:shown]) + "..."
	}
	return strconv.Quote(s)
}

// parsePins reads the pins of Config.Pins. A value may hold several pins
// joined by ";" as curl writes them (sha256//A;sha256//B).
func parsePins(values []string) ([]Pin, error) {
	var pins []Pin
	for _, value := range values {
		for part := range strings.SplitSeq(value, ";") {
			pin, err := ParsePin(part)
			if err != nil {
				return nil, inputerr.New("Config.Pins", pinProblemValue(part), pinExpected)
			}
			pins = append(pins, pin)
		}
	}
	return pins, nil
}

// pinSet is the pins a Checker accepts, as one value that a reload
// replaces whole. generation counts the replacements: a connection made
// under an older set is not used for LOGIN (see Checker.check).
type pinSet struct {
	pins       []Pin // empty: no pinning
	generation uint64
}

// verify accepts a connection when no pin is set, or when some certificate
// of a chain the normal verification built (leaf, intermediate or the
// trust anchor) has a pinned key. It runs after that verification, on
// every handshake, resumed ones included, so the set in use now decides.
func (s *pinSet) verify(state tls.ConnectionState) error {
	if len(s.pins) == 0 {
		return nil
	}
	for _, chain := range state.VerifiedChains {
		for _, cert := range chain {
			if slices.Contains(s.pins, PinOf(cert)) {
				return nil
			}
		}
	}
	return &PinMismatchError{Expected: slices.Clone(s.pins), Found: chainCertificates(state.VerifiedChains)}
}

// chainCertificates are the certificates of chains, each once, in the
// order of the chains (leaf first).
func chainCertificates(chains [][]*x509.Certificate) []*x509.Certificate {
	var certs []*x509.Certificate
	for _, chain := range chains {
		for _, cert := range chain {
			if !slices.ContainsFunc(certs, cert.Equal) {
				certs = append(certs, cert)
			}
		}
	}
	return certs
}

// oneLine is s, quoted when it holds anything but printable characters
// and spaces: a subject comes from the server's certificate, and pkix
// does not escape line breaks or terminal escapes in it, while the error
// must stay one line.
func oneLine(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// PinMismatchError is a server whose certificate chain verified but holds
// no pinned key. The handshake is aborted: no credential is ever sent on
// such a connection.
type PinMismatchError struct {
	// Expected are the pins in force.
	Expected []Pin
	// Found are the certificates of the verified chains, leaf first.
	Found []*x509.Certificate
}

func (e *PinMismatchError) Error() string {
	expected := make([]string, len(e.Expected))
	for i, pin := range e.Expected {
		expected[i] = pin.String()
	}
	found := make([]string, len(e.Found))
	for i, cert := range e.Found {
		found[i] = fmt.Sprintf("%s (%s)", PinOf(cert), oneLine(cert.Subject.String()))
	}
	if len(found) == 0 {
		found = []string{"no verified chain"}
	}
	return fmt.Sprintf("server key not pinned: expected %s, found %s", strings.Join(expected, " or "), strings.Join(found, ", "))
}

// ErrNoPinFile is the answer of ReloadPins for a Checker without
// Config.PinFile: there is nothing to read again.
var ErrNoPinFile = errors.New("no pin file to read again (Config.PinFile is empty)")

// ReloadPins reads Config.PinFile again and puts its pins, with
// Config.Pins, in force: connections made from now on are checked against
// them, and a ready connection (Config.Warm) verified against the pins
// they replace is logged out unused. When the file cannot be read or holds
// no valid pin, the pins in force stay and the error (a *PinFileError)
// says why. It returns the number of pins in force afterwards.
func (c *Checker) ReloadPins() (int, error) {
	if c.pinFile == "" {
		return len(c.pins.Load().pins), ErrNoPinFile
	}
	filePins, err := readPinFile(c.pinFile)
	c.reload.Lock()
	defer c.reload.Unlock()
	old := c.pins.Load()
	if err != nil {
		return len(old.pins), err
	}
	pins := append(slices.Clone(c.flagPins), filePins...)
	if !slices.Equal(pins, old.pins) {
		// A new generation only for new pins: the same file read again
		// keeps the ready connections.
		c.pins.Store(&pinSet{pins: pins, generation: old.generation + 1})
	}
	return len(pins), nil
}

// Pins are the pins in force (none: the key is not pinned).
func (c *Checker) Pins() []Pin { return slices.Clone(c.pins.Load().pins) }
