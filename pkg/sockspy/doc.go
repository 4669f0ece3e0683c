// Package sockspy proxies a UNIX socket and records what passes as pcap or pcapng.
package sockspy
