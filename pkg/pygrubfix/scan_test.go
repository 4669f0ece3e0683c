package pygrubfix

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestScanDroppedConnectionIsAConnectError: a libvirtd that hangs up
// during the handshake (restarting, or over max_clients) is a temporary
// failure, like one that cannot be reached at all.
func TestScanDroppedConnectionIsAConnectError(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "libvirt-sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Read(make([]byte, 512))
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })

	uri, err := ParseURI("test:///default?socket=" + sock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Scan(context.Background(), uri)
	var connErr *ConnectError
	if !errors.As(err, &connErr) {
		t.Fatalf("Scan on a daemon that hangs up: %v (%T), want a ConnectError", err, err)
	}
}

func TestParseURIRejectsTransportsGoLibvirtCannotDial(t *testing.T) {
	for uri, ok := range map[string]bool{
		"xen:///system":                          true,
		"test:///srv/node.xml?socket=/tmp/sock":  true,
		"qemu+tcp://host/system":                 true,
		"xen+tls://host/system":                  true,
		"xen+ssh://root@host/system":             true,
		"qemu+libssh2://host/system":             true,
		"xen+unix:///system?socket=/run/x":       true,
		"xen+bogus:///system":                    false,
		"qemu+ext:///system?command=/opt/tunnel": false,
		"nope":                                   false,
	} {
		if _, err := ParseURI(uri); (err == nil) != ok {
			t.Errorf("ParseURI(%q): %v, want ok=%v", uri, err, ok)
		}
	}
}

// TestCheckGuestsNamesTheGuestsThatWouldNotBoot runs the real pygrub on an
// EL7 disk, and on guests it cannot check (no disk, a bootloader missing on
// this host): those are the ones CheckGuests names, in order.
func TestCheckGuestsNamesTheGuestsThatWouldNotBoot(t *testing.T) {
	pygrub := needPygrub(t)
	good := ext2Image(t, guestTree(t, map[string]string{
		"/grub2/grub.cfg":                       corpus(t, "centos7.cfg"),
		"/vmlinuz-3.10.0-1160.el7.x86_64":       "k",
		"/initramfs-3.10.0-1160.el7.x86_64.img": "i",
	}))
	guests := []Guest{
		{Domain: "nodisk", Bootloader: pygrub},
		{Domain: "el7", Bootloader: pygrub, Disks: []string{good}},
		{Domain: "oldhost", Bootloader: "/usr/lib/xen-4.1/bin/pygrub", Disks: []string{good}},
	}
	unbootable := CheckGuests(context.Background(), guests, "")
	if strings.Join(unbootable, ",") != "nodisk,oldhost" {
		t.Errorf("unbootable %v, want nodisk and oldhost", unbootable)
	}
	for _, g := range guests {
		if g.Check == nil || g.Check.Bootable != (g.Domain == "el7") || g.Check.Detail == "" {
			t.Errorf("%s: check %+v", g.Domain, g.Check)
		}
	}
}
