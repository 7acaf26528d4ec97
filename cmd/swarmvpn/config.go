package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v3"
)

// A config file holds one setting per line, "name = value", where name is a
// flag of the command without its dashes. Blank lines and lines starting
// with '#' are ignored. A setting given more than once adds to a list flag
// (such as rule). Flags and SWARMVPN_* variables override the file.

type setting struct {
	line      int
	name, val string
}

// maxConfigSize bounds what a config file may hold.
const maxConfigSize = 1 << 20

// parseConfig reads settings from r. It does not know which names exist.
func parseConfig(r io.Reader) ([]setting, error) {
	var out []setting
	sc := bufio.NewScanner(io.LimitReader(r, maxConfigSize+1))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n, size := 0, 0
	for sc.Scan() {
		n++
		size += len(sc.Bytes()) + 1
		if size > maxConfigSize {
			return nil, fmt.Errorf("longer than %d bytes", maxConfigSize)
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if !ok || name == "" {
			return nil, fmt.Errorf("line %d: want \"name = value\", got %q", n, line)
		}
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		out = append(out, setting{line: n, name: name, val: val})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d is too long", n+1)
		}
		return nil, err
	}
	return out, nil
}

// applyConfig reads the file named by --config, if any, and sets every flag
// that neither the command line nor the environment has set.
func applyConfig(ctx context.Context, cmd *cli.Command) (context.Context, error) {
	path := cmd.String("config")
	if path == "" {
		return ctx, nil
	}
	path, err := expandHome(path)
	if err != nil {
		return ctx, fmt.Errorf("--config %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return ctx, fmt.Errorf("cannot read config file: %w", err)
	}
	defer f.Close()
	settings, err := parseConfig(f)
	if err != nil {
		return ctx, fmt.Errorf("config file %s: %w", path, err)
	}
	names := flagNames(cmd)
	explicit := map[string]bool{}
	for _, s := range settings {
		if s.name == "config" || !slices.Contains(names, s.name) {
			return ctx, fmt.Errorf("config file %s line %d: unknown setting %q (settings are the flags of 'swarmvpn %s': %s)",
				path, s.line, s.name, cmd.Name, strings.Join(names, ", "))
		}
		if _, seen := explicit[s.name]; !seen {
			explicit[s.name] = cmd.IsSet(s.name)
		}
		if explicit[s.name] {
			continue
		}
		if err := cmd.Set(s.name, s.val); err != nil {
			if want := wantValue(cmd, s.name); want != "" {
				return ctx, fmt.Errorf("config file %s line %d: %s = %q: want %s", path, s.line, s.name, s.val, want)
			}
			return ctx, fmt.Errorf("config file %s line %d: %s = %q: %w", path, s.line, s.name, s.val, err)
		}
	}
	return ctx, nil
}

// wantValue says what kind of value the flag name takes, for an error
// about one that does not parse; "" when the flag's own error says it.
func wantValue(cmd *cli.Command, name string) string {
	for _, f := range cmd.Flags {
		if f.Names()[0] != name {
			continue
		}
		switch f.(type) {
		case *cli.BoolFlag:
			return "true or false"
		case *cli.IntFlag:
			return "a whole number"
		case *cli.Uint16Flag:
			return "a number from 0 to 65535"
		case *cli.DurationFlag:
			return "a duration such as 30s, 5m or 1h"
		}
	}
	return ""
}

func flagNames(cmd *cli.Command) []string {
	var names []string
	for _, f := range cmd.Flags {
		n := f.Names()[0]
		if n != "config" && n != "help" {
			names = append(names, n)
		}
	}
	return names
}
