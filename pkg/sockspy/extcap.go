package sockspy

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/gopacket/gopacket/layers"
)

// Wireshark's extcap interface: an executable in Wireshark's extcap folder
// that answers
//
//	--extcap-interfaces [--extcap-version=4.0]     the interfaces it offers
//	--extcap-interface IF --extcap-dlts            their link-layer types
//	--extcap-interface IF --extcap-config          the options of a capture
//	--extcap-interface IF --capture --fifo PATH [options]
//
// Wireshark reads each answer as lines of sentences, "arg {number=0}{call=
// --socket}...", and shows the options in its capture dialog; a capture
// writes pcap or pcapng into the FIFO Wireshark made and reads. What the
// extcap writes on stderr, Wireshark shows as an error.

// ExtcapInterface is the name of sockspy's one interface in Wireshark's
// list (tshark -D, tshark -i). Wireshark 4.0 names an interface's
// preferences after it with "-" turned into "_"; without one, -i and
// tshark's -o extcap.opsctl_sock.socket:PATH spell it the same.
const ExtcapInterface = "opsctl_sock"

// ExtcapLinkName is the name of the link to opsctl in Wireshark's extcap
// folder: Wireshark runs it, and opsctl knows by that name (argv[0]) that
// Wireshark is asking.
const ExtcapLinkName = "opsctl-sock"

// The options of a capture, as the extcap calls them: Wireshark passes
// them back as arguments of the capture, "--socket PATH".
const (
	ExtcapSocket     = "socket"      // a socket from the list of the host's
	ExtcapSocketPath = "socket-path" // or one typed by hand, which wins
	ExtcapMode       = "mode"        // swap (the default) or listen
	ExtcapProxy      = "proxy"       // where the proxy serves in listen mode
	ExtcapPort       = "port"        // the server port of the synthetic TCP
)

// Extcap modes: serve at the socket's own path, or at a proxy path.
const (
	ExtcapModeSwap   = "swap"
	ExtcapModeListen = "listen"
)

// extcapMaxSockets bounds the socket list of the capture dialog: other
// users make as many sockets as they like; one beyond it can be typed.
const extcapMaxSockets = 2000

// WriteExtcapInterfaces answers --extcap-interfaces: the extcap's version
// (shown in Wireshark's About dialog) and its one interface.
func WriteExtcapInterfaces(w io.Writer, version string) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "extcap {version=%s}{display=opsctl sock capture}\n", extcapText(version, "dev"))
	fmt.Fprintf(bw, "interface {value=%s}{display=UNIX socket (opsctl)}\n", ExtcapInterface)
	return bw.Flush()
}

// WriteExtcapDLTs answers --extcap-dlts: IPv4 without a link layer
// (LINKTYPE_RAW), the synthetic TCP and UDP of every capture.
func WriteExtcapDLTs(w io.Writer) error {
	_, err := fmt.Fprintf(w, "dlt {number=%d}{name=RAW}{display=IPv4: a synthetic TCP connection per UNIX connection, UDP for datagrams}\n", int(layers.LinkTypeRaw))
	return err
}

// WriteExtcapConfig answers --extcap-config: the options of a capture,
// with sockets (ListeningSockets) to choose from. Wireshark 4.0 has no
// editable list, so a socket that is not in it (in another network
// namespace, bound later) is typed in a field of its own.
func WriteExtcapConfig(w io.Writer, sockets []UnixSocket) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "arg {number=0}{call=--%s}{display=Socket}{type=selector}{required=true}{reload=true}{placeholder=Reload the list}"+
		"{tooltip=A listening UNIX socket of this host (from /proc/net/unix)}\n", ExtcapSocket)
	fmt.Fprintf(bw, "arg {number=1}{call=--%s}{display=Or this socket}{type=string}"+
		"{tooltip=A socket that is not in the list: a path or @name (abstract). When set, it is captured instead}\n", ExtcapSocketPath)
	fmt.Fprintf(bw, "arg {number=2}{call=--%s}{display=Mode}{type=radio}"+
		"{tooltip=swap: serve at the socket's own path, the original kept beside it and put back at the end; listen: serve at the proxy socket}\n", ExtcapMode)
	fmt.Fprintf(bw, "arg {number=3}{call=--%s}{display=Proxy socket (listen mode)}{type=string}"+
		"{tooltip=Where the proxy serves in listen mode: a path or @name; point the clients at it}\n", ExtcapProxy)
	fmt.Fprintf(bw, "arg {number=4}{call=--%s}{display=Server port}{type=unsigned}{range=1,65535}{default=80}"+
		"{tooltip=TCP port of the server side of the synthetic connections: it picks Wireshark's dissector (80 HTTP, 5432 PostgreSQL, 6379 Redis)}\n", ExtcapPort)
	writeExtcapSocketValues(bw, sockets)
	fmt.Fprintf(bw, "value {arg=2}{value=%s}{display=swap: clients need no change}{default=true}\n", ExtcapModeSwap)
	fmt.Fprintf(bw, "value {arg=2}{value=%s}{display=listen: clients use the proxy socket}{default=false}\n", ExtcapModeListen)
	return bw.Flush()
}

// WriteExtcapReload answers --extcap-reload-option for option (the call
// without its dashes): the socket list again, read anew.
func WriteExtcapReload(w io.Writer, option string, sockets []UnixSocket) error {
	if option != ExtcapSocket {
		return nil
	}
	bw := bufio.NewWriter(w)
	writeExtcapSocketValues(bw, sockets)
	return bw.Flush()
}

// writeExtcapSocketValues writes the values of the socket list, at most
// extcapMaxSockets of them. A socket whose address the sentence grammar
// cannot carry (braces, control characters, bytes that are not UTF-8) is
// left out: it can still be typed.
func writeExtcapSocketValues(w io.Writer, sockets []UnixSocket) {
	n := 0
	for _, s := range sockets {
		if n == extcapMaxSockets {
			break
		}
		if extcapText(s.Path, "") != s.Path || s.Path == "" {
			continue
		}
		fmt.Fprintf(w, "value {arg=0}{value=%s}{display=%s (%s)}{default=false}\n", s.Path, s.Path, s.Type)
		n++
	}
}

// extcapText is s when a sentence can carry it (no braces, no control
// characters, valid UTF-8), else def: Wireshark's parser drops a sentence
// that is not UTF-8, and splits fields at "}{".
func extcapText(s, def string) string {
	if s == "" || !utf8.ValidString(s) || strings.ContainsAny(s, "{}") {
		return def
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return def
		}
	}
	return s
}
