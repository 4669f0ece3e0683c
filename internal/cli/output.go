package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// OutputFlag is the value of -o/--output: one of a fixed set of formats.
type OutputFlag struct {
	Value   string
	allowed []string
}

// AddOutputFlag registers -o/--output on flags. The first format is the default.
func AddOutputFlag(flags *pflag.FlagSet, formats ...string) *OutputFlag {
	o := &OutputFlag{Value: formats[0], allowed: formats}
	flags.VarP(o, "output", "o", "output format")
	return o
}

func (o *OutputFlag) String() string { return o.Value }

// Type is what help shows as the flag's value: the formats ("-o text|json").
func (o *OutputFlag) Type() string { return strings.Join(o.allowed, "|") }

// Choices are the formats shell completion offers.
func (o *OutputFlag) Choices() []string { return o.allowed }

// Set accepts only the formats the command offers.
func (o *OutputFlag) Set(v string) error {
	if !slices.Contains(o.allowed, v) {
		return fmt.Errorf("expected one of %s", strings.Join(o.allowed, ", "))
	}
	o.Value = v
	return nil
}

// JSON reports whether JSON output was chosen.
func (o *OutputFlag) JSON() bool { return o.Value == "json" }

// WriteJSON writes v as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
