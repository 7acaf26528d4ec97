package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/internal/link"
	"github.com/swarmvpn/swarmvpn/internal/listener"
)

// env names the environment variable that can set flag name.
func env(name string) cli.ValueSourceChain {
	return cli.EnvVars("SWARMVPN_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
}

func stringFlag(name, value, usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Value: value, Usage: usage, Sources: env(name)}
}

// commonFlags are shared by the long-running roles.
func commonFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("config", "", "read settings from `FILE` (name = value lines; flags override it)"),
		stringFlag("state-dir", "", "keep the identity key and state in `DIR` (default: swarmvpn under the user's config directory)"),
		stringFlag("key", "", "identity key `FILE` (default: a key in the state dir, created on first run)"),
		stringFlag("log-level", "info", "log `LEVEL`: debug, info, warn or error (destinations appear only at debug)"),
		stringFlag("log-format", "text", "log `FORMAT`: text or json"),
		metricsFlag(),
	}
}

// newLogger builds the logger the flags ask for, writing to stderr.
func newLogger(cmd *cli.Command) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmd.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", cmd.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cmd.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", cmd.String("log-format"))
}

// stateDir returns --state-dir or its default.
func stateDir(cmd *cli.Command) (string, error) {
	if d := cmd.String("state-dir"); d != "" {
		return d, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("cannot find the user's config directory (%v): pass --state-dir DIR", err)
	}
	return filepath.Join(base, "swarmvpn"), nil
}

// identity loads the key named by --key, or the role's key in the state
// dir, creating the latter when it does not exist yet.
func identity(cmd *cli.Command, role string, log *slog.Logger) (*link.Identity, error) {
	if path := cmd.String("key"); path != "" {
		return readKey(path)
	}
	dir, err := stateDir(cmd)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, role+".key")
	id, created, err := link.LoadOrCreateIdentity(path)
	if err != nil {
		return nil, keyError(path, err)
	}
	if created {
		log.Info("created a new identity", "file", path, "peer", id.ID().String())
	}
	return id, nil
}

func readKey(path string) (*link.Identity, error) {
	id, err := link.LoadIdentity(path)
	if err != nil {
		return nil, keyError(path, err)
	}
	return id, nil
}

func keyError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("key file %s does not exist: create one with 'swarmvpn keygen --key %s', or leave out --key to use the state dir", path, path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot read key file %s: permission denied: run as the key's owner, or fix its owner and mode (0600)", path)
	}
	return fmt.Errorf("cannot use key file %s: %v", path, err)
}

// listen opens a TCP listener, turning the usual failures into advice.
func listen(addr, flag string) (net.Listener, error) { return listener.Open(addr, flag) }

// closeAll closes listeners opened before a later step failed, so nothing
// is left half-started.
func closeAll(lns ...net.Listener) { listener.CloseAll(lns...) }
