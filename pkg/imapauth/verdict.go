// Package imapauth answers one question for an SMTP server: do this user
// name and password log in to the IMAP server? The answer has three values
// (yes, no, defer) and a certificate, connection or protocol problem is never
// reported as a wrong password.
//
// A Checker asks the IMAP server over verified TLS (implicit or STARTTLS); a
// Server answers the same question for Exim's ${readsocket} on a UNIX socket.
package imapauth

// Verdict is the answer to one login check.
type Verdict int

const (
	// Defer means no answer could be had: the connection, the certificate,
	// the protocol or the time limit failed. The zero value, so that a
	// forgotten assignment can never grant a login.
	Defer Verdict = iota
	// Yes means the IMAP server accepted the user name and password.
	Yes
	// No means the IMAP server rejected the user name and password.
	No
)

// String returns "yes", "no" or "defer": the words the check command prints
// and the readsocket daemon replies.
func (v Verdict) String() string {
	switch v {
	case Yes:
		return "yes"
	case No:
		return "no"
	default:
		return "defer"
	}
}
