package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v3"
)

// pathFlags are the flags that name a file or directory. Their values get
// ~ and $HOME expanded wherever they come from (flag, environment, config
// file): a shell expands them on a command line, but not in a config file,
// a systemd unit or a quoted argument, and a literal "~" directory in the
// working directory is never what was meant.
var pathFlags = []string{"config", "state-dir", "key", "port-file", "allow-clients-file", "cpuprofile"}

// expandHome turns a leading "~", "~/", "$HOME" or "${HOME}" of path into
// the user's home directory. Any other path comes back as it is.
func expandHome(path string) (string, error) {
	rest, ok := "", false
	for _, prefix := range []string{"~", "$HOME", "${HOME}"} {
		if path == prefix || strings.HasPrefix(path, prefix+"/") {
			rest, ok = strings.TrimPrefix(path, prefix), true
			break
		}
	}
	if !ok {
		if strings.HasPrefix(path, "~") {
			return "", fmt.Errorf("%q: only ~/ (your own home) is expanded; write the full path", path)
		}
		return path, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%q: cannot find the home directory to expand it (%v); write the full path", path, err)
	}
	return filepath.Join(home, rest), nil
}

// expandPaths expands ~ and $HOME in every path flag cmd has. It runs
// after the config file has been applied, so it sees every source.
func expandPaths(_ context.Context, cmd *cli.Command) error {
	for _, name := range pathFlags {
		if !hasFlag(cmd, name) {
			continue
		}
		v := cmd.String(name)
		if v == "" {
			continue
		}
		p, err := expandHome(v)
		if err != nil {
			return fmt.Errorf("--%s %w", name, err)
		}
		if p != v {
			if err := cmd.Set(name, p); err != nil {
				return fmt.Errorf("--%s %q: %w", name, v, err)
			}
		}
	}
	return nil
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}
