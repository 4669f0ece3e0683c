// Package pygrubfix reads grub configs the way Xen's pygrub does, patches the host's pygrub, writes menu.lst and scans libvirt.
package pygrubfix
