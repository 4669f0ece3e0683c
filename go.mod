module github.com/opsctl/opsctl

go 1.26.8

require (
	github.com/digitalocean/go-libvirt v0.0.0-20261013170128-efbbdf578ac8
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.10
	golang.org/x/term v0.48.0
	libvirt.org/go/libvirtxml v1.12008.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	golang.org/x/crypto v0.48.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
