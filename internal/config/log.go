package config

import (
	"io"
	"log/slog"
)

// Log is how a program logs: WRENN_LOG_LEVEL and WRENN_LOG_FORMAT (and --log-level,
// --log-format), common to every program.
type Log struct {
	Level  slog.Level
	Format string // "text" or "json"
}

// New is a logger writing to w at l's level in l's format.
func (l Log) New(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func logSettings(l *Log) []*Setting {
	return []*Setting{
		{Flag: "log-level", Env: "WRENN_LOG_LEVEL", Default: "info", Value: Level(&l.Level),
			Usage: "least severe log messages written: debug, info, warn or error"},
		{Flag: "log-format", Env: "WRENN_LOG_FORMAT", Default: "text", Value: OneOf(&l.Format, "text", "json"),
			Usage: "log lines as text (key=value) or json (one object a line)"},
	}
}
