// Package logging configures tryd's structured logs (logrus): text for a
// terminal, JSON for machines, and a "component" field on every line so that
// the output of several components sharing one process stays separable.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
)

// Options says how logs are written. The zero value writes text at info
// level to standard error.
type Options struct {
	// Format is "text" (the default) or "json".
	Format string
	// Level is a logrus level name: "debug", "info" (the default),
	// "warn", "error".
	Level string
	// Output is where lines go; nil means os.Stderr.
	Output io.Writer
}

// New returns a logger configured by opts, or an error naming the bad
// option.
func New(opts Options) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	if opts.Output != nil {
		l.SetOutput(opts.Output)
	}
	switch strings.ToLower(opts.Format) {
	case "", "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("logging: unknown format %q (want text or json)", opts.Format)
	}
	level := logrus.InfoLevel
	if opts.Level != "" {
		var err error
		level, err = logrus.ParseLevel(opts.Level)
		if err != nil {
			return nil, fmt.Errorf("logging: %w", err)
		}
	}
	l.SetLevel(level)
	return l, nil
}

// For returns an entry that tags every line with the component's name.
func For(l logrus.FieldLogger, component string) *logrus.Entry {
	return l.WithField("component", component)
}

// Discard returns an entry that writes nothing, for tests and for
// libraries given no logger.
func Discard() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}
