package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Chooser is a flag value that takes one of a fixed set of words. The root
// command offers Choices to shell completion for every flag whose value is a
// Chooser, so a command only has to define the flag with EnumVar (or
// AddOutputFlag).
type Chooser interface {
	Choices() []string
}

// Enum is the value of a flag that takes one word of a fixed set, like
// --tls implicit|starttls. It writes the word chosen into a string the
// command already reads, so switching a StringVar to EnumVar changes only
// the line that defines the flag.
type Enum struct {
	target  *string
	choices []string
	aliases []string
}

// EnumVar defines a flag that accepts one of choices (case-insensitive,
// stored as written in choices) into p, with value as its default. Help
// shows the choices as the flag's value ("--tls implicit|starttls"), so
// usage need not list them; a wrong value is a usage error naming them.
func EnumVar(flags *pflag.FlagSet, p *string, name, value string, choices []string, usage string) *Enum {
	return EnumVarP(flags, p, name, "", value, choices, usage)
}

// EnumVarP is EnumVar with a one-letter shorthand.
func EnumVarP(flags *pflag.FlagSet, p *string, name, shorthand, value string, choices []string, usage string) *Enum {
	*p = value
	e := &Enum{target: p, choices: choices}
	flags.VarP(e, name, shorthand, usage)
	return e
}

// Accept makes the flag take aliases too (stored as given), without
// showing or completing them: older spellings that still work.
func (e *Enum) Accept(aliases ...string) *Enum {
	e.aliases = append(e.aliases, aliases...)
	return e
}

func (e *Enum) String() string {
	if e.target == nil {
		return ""
	}
	return *e.target
}

// Type is what help shows as the flag's value: the choices.
func (e *Enum) Type() string { return strings.Join(e.choices, "|") }

// Choices are the words shell completion offers.
func (e *Enum) Choices() []string { return e.choices }

// Set accepts a choice in any case, or an alias as written.
func (e *Enum) Set(v string) error {
	for _, c := range e.choices {
		if strings.EqualFold(c, v) {
			*e.target = c
			return nil
		}
	}
	for _, a := range e.aliases {
		if a == v {
			*e.target = a
			return nil
		}
	}
	return fmt.Errorf("expected %s", joinOr(e.choices))
}

// joinOr is "a", "a or b", "a, b or c".
func joinOr(words []string) string {
	switch len(words) {
	case 0:
		return "nothing"
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
