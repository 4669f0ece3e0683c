package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/imapauth"
)

// IMAPAuthPinOptions are the inputs of `imap-auth pin`.
type IMAPAuthPinOptions struct {
	*cli.Factory
	Server imapServerFlags
	Output *cli.OutputFlag
}

// NewCmdIMAPAuthPin builds `imap-auth pin`; runF, when set, receives the
// options instead of runIMAPAuthPin (tests of the flags).
func NewCmdIMAPAuthPin(f *cli.Factory, runF func(*IMAPAuthPinOptions) error) *cobra.Command {
	opts := &IMAPAuthPinOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "pin --server HOST[:PORT] [flags]",
		Short: "Print the pins of the certificate chain the IMAP server presents",
		Long: `Connect to the IMAP server as check does (the chain and the name verified,
TLS 1.2 or newer, STARTTLS with --tls starttls), stop before LOGIN, and print
the pin of each certificate of the verified chain, the server's first and
the trusted CA last: the base64 SHA-256 of its SubjectPublicKeyInfo, in the
sha256//BASE64 form that --pin-sha256 and --pin-file take. No credential is
sent.

Each line of text output is: the pin, the place in the chain (leaf,
intermediate or ca) and the certificate's subject. -o json gives the same
with the issuer and the end of validity.

Exit 0 with the pins; 1 when no verified chain could be had (connection,
certificate, protocol, time-out), with the reason on stderr.`,
		Example: `  # what to pin today; pin the leaf and the next key, or the CA
  opsctl imap-auth pin --server imap.example.org

  # STARTTLS on port 143 with a private CA, for a script
  opsctl imap-auth pin --server imap.example.org --tls starttls --ca-file /etc/ssl/imap-ca.pem -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runIMAPAuthPin(opts)
		},
	}
	opts.Server.register(cmd.Flags())
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runIMAPAuthPin(opts *IMAPAuthPinOptions) error {
	checker, err := opts.Server.checker(0, imapPinFlags{})
	if err != nil {
		return err
	}
	defer checker.Close()
	chain, err := checker.VerifiedChain(opts.BaseContext())
	if err != nil {
		return fmt.Errorf("imap-auth pin: %w", imapError(err))
	}
	if opts.Output.JSON() {
		return cli.WriteJSON(opts.IO.Out, pinReport(checker.Addr(), chain))
	}
	return writePinsText(opts.IO.Out, chain)
}

// chainPin is one certificate of the chain in pin's JSON output.
type chainPin struct {
	Pin      string    `json:"pin"`
	Place    string    `json:"place"`
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
}

// pinOutput is pin's JSON output.
type pinOutput struct {
	Server string     `json:"server"`
	Chain  []chainPin `json:"chain"`
}

func pinReport(addr string, chain []*x509.Certificate) pinOutput {
	out := pinOutput{Server: addr, Chain: []chainPin{}}
	for i, cert := range chain {
		out.Chain = append(out.Chain, chainPin{
			Pin: imapauth.PinOf(cert).String(), Place: chainPlace(i, len(chain)),
			Subject: cert.Subject.String(), Issuer: cert.Issuer.String(), NotAfter: cert.NotAfter.UTC(),
		})
	}
	return out
}

func writePinsText(w io.Writer, chain []*x509.Certificate) error {
	for i, cert := range chain {
		if _, err := fmt.Fprintf(w, "%s  %-12s  %s\n", imapauth.PinOf(cert), chainPlace(i, len(chain)), printableSubject(cert)); err != nil {
			return err
		}
	}
	return nil
}

// printableSubject is cert's subject as one line of text, quoted when it
// holds line breaks, terminal escapes or other characters that are not
// printable: it comes from the server.
func printableSubject(cert *x509.Certificate) string {
	subject := cert.Subject.String()
	if strings.IndexFunc(subject, func(r rune) bool { return !unicode.IsGraphic(r) }) < 0 {
		return subject
	}
	return strconv.Quote(subject)
}

// chainPlace names the place of the i-th of n certificates of a verified
// chain: the server's own first, the trusted CA last.
func chainPlace(i, n int) string {
	switch {
	case i == 0:
		return "leaf"
	case i == n-1:
		return "ca"
	}
	return "intermediate"
}
