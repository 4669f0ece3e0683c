// Package vmtest holds the integration test of opsctl lvm cache on real
// lvm2 and dm-cache: this machine's kernel has no device-mapper, so the test
// boots a throwaway qemu VM (TCG) with a Debian kernel and an initramfs made
// by assets.sh, runs test.sh in it and asserts on the results it prints on
// the console.
package vmtest
