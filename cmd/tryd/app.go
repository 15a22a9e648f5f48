package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/logging"
)

var (
	errHelp  = errors.New("help requested")
	errUsage = errors.New("bad usage")
)

// app carries what every subcommand shares: output streams, and after
// parse the configuration, data directory and logger.
type app struct {
	stdout, stderr io.Writer

	cfg     *config.Config
	dataDir string
	log     *logrus.Logger
}

// commonFlags are the flags every subcommand accepts, with the same names
// everywhere.
type commonFlags struct {
	config    string
	dataDir   string
	logFormat string
	logLevel  string
}

// flags returns a FlagSet for the subcommand with the common flags
// registered. usageLine is shown under "Usage:"; description explains
// the command.
func (a *app) flags(name, usageLine, description string) (*flag.FlagSet, *commonFlags) {
	fs := flag.NewFlagSet("tryd "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	cf := &commonFlags{}
	fs.StringVar(&cf.config, "config", "", "path of tryd.yaml (default: ./tryd.yaml if it exists)")
	fs.StringVar(&cf.dataDir, "data-dir", "", "directory for embedded defaults' files (default: data_dir from the config, else ./tryd-data)")
	fs.StringVar(&cf.logFormat, "log-format", "", "log format: text or json (default text)")
	fs.StringVar(&cf.logLevel, "log-level", "", "log level: debug, info, warn or error (default info)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: tryd %s %s\n\n%s\n\nFlags (each also settable as TRYD_<FLAG>, e.g. --data-dir as TRYD_DATA_DIR):\n\n", name, usageLine, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs, cf
}

// parse parses args, applies TRYD_* environment variables to flags not set
// on the command line, loads the configuration and sets up logging.
func (a *app) parse(fs *flag.FlagSet, cf *commonFlags, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintln(a.stderr, err)
		return errUsage
	}
	path := cf.config
	if path == "" {
		if _, err := os.Stat("tryd.yaml"); err == nil {
			path = "tryd.yaml"
		}
	}
	a.cfg = &config.Config{}
	if path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			return err
		}
		a.cfg = cfg
	}
	format, level := a.cfg.Log.Format, a.cfg.Log.Level
	if cf.logFormat != "" {
		format = cf.logFormat
	}
	if cf.logLevel != "" {
		level = cf.logLevel
	}
	log, err := logging.New(logging.Options{Format: format, Level: level, Output: a.stderr})
	if err != nil {
		return err
	}
	a.log = log
	a.dataDir = cf.dataDir
	if a.dataDir == "" {
		a.dataDir = a.cfg.DataDir
	}
	if a.dataDir == "" {
		a.dataDir = "tryd-data"
	}
	if abs, err := filepath.Abs(a.dataDir); err == nil {
		a.dataDir = abs
	}
	return nil
}

// applyEnv sets every flag not given on the command line from the
// environment variable TRYD_<NAME> (upper case, dashes as underscores).
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v, ok := lookup(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

// EnvName returns the environment variable that sets the named flag.
func EnvName(flag string) string {
	return "TRYD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// subdir returns (and creates) a directory under the data directory.
func (a *app) subdir(name string) (string, error) {
	d := filepath.Join(a.dataDir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return d, nil
}
