package inputerr

import (
	"context"
	"log/slog"
)

// RenameHandler returns a handler that passes records on to h with the
// names of names shown as RenameText shows them, in the message and in
// the attributes that are strings or errors: a package's daemon logs the
// errors of its inputs (a hint such as "check Config.CAFile") and the
// admin reading the journal sees the flags, as at the terminal.
func RenameHandler(h slog.Handler, names map[string]string) slog.Handler {
	return &renameHandler{next: h, names: names}
}

type renameHandler struct {
	next  slog.Handler
	names map[string]string
}

func (h *renameHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *renameHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, RenameText(r.Message, h.names), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *renameHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	renamed := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		renamed[i] = h.attr(a)
	}
	return &renameHandler{next: h.next.WithAttrs(renamed), names: h.names}
}

func (h *renameHandler) WithGroup(name string) slog.Handler {
	return &renameHandler{next: h.next.WithGroup(name), names: h.names}
}

// attr is a with its text renamed: a string, an error (as its message),
// or the attributes of a group.
func (h *renameHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, RenameText(v.String(), h.names))
	case slog.KindGroup:
		group := v.Group()
		renamed := make([]any, len(group))
		for i, member := range group {
			renamed[i] = h.attr(member)
		}
		return slog.Group(a.Key, renamed...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, RenameText(err.Error(), h.names))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
