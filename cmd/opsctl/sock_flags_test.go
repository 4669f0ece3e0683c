package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/sockspy"
)

func TestSockCaptureFlagsFillTheOptions(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		terminal   bool
		wantFormat sockspy.Format
		wantErr    string
	}{
		{"pcapng from the file name", []string{"--socket", "/s", "--swap", "-w", "x.PCAPNG"}, false, sockspy.FormatPcapng, ""},
		{"pcap by default", []string{"--socket", "/s", "--listen", "/p", "-w", "x.cap"}, false, sockspy.FormatPcap, ""},
		{"explicit format wins", []string{"--socket", "/s", "--listen", "/p", "-w", "x.pcapng", "--format", "PCAP"}, false, sockspy.FormatPcap, ""},
		{"hexdump alone", []string{"--socket", "@s", "--listen", "@p", "--hexdump"}, false, sockspy.FormatPcap, ""},
		{"stdout pipe", []string{"--socket", "/s", "--swap", "-w", "-"}, false, sockspy.FormatPcap, ""},
		{"stdout terminal", []string{"--socket", "/s", "--swap", "-w", "-"}, true, 0, "stdout is a terminal"},
		{"port too large", []string{"--socket", "/s", "--swap", "-w", "f", "--port", "70000"}, false, 0, "--port 70000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got *SockCaptureOptions
			f := &cli.Factory{IO: &cli.IOStreams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}, OutIsTerminal: tc.terminal}}
			cmd := NewCmdSockCapture(f, func(o *SockCaptureOptions) error { got = o; return nil })
			cmd.SetArgs(tc.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			cfg, format, err := got.validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || cli.ExitCode(err) != cli.ExitUsage {
					t.Fatalf("err %v, want a usage error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if format != tc.wantFormat || cfg.Socket != got.Socket || cfg.Swap != got.Swap || cfg.Listen != got.Listen {
				t.Errorf("config %+v format %v from %+v", cfg, format, got)
			}
		})
	}
}
