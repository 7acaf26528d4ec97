package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "create an ed25519 identity key file (mode 0600) and print its peer ID",
		Flags: []cli.Flag{&cli.StringFlag{Name: "key", Usage: "write the key to `FILE`"}},
		Action: func(_ context.Context, cmd *cli.Command) error {
			path := cmd.String("key")
			if path == "" {
				return errors.New("keygen: name the file to write with --key FILE " +
					"(connect and exit need no keygen: they create their key in the state dir on first run, and 'swarmvpn id' prints its ID)")
			}
			id, err := link.NewIdentity()
			if err != nil {
				return err
			}
			if err := id.Save(path); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%s already exists; refusing to overwrite an identity (remove it first if you mean to replace it)", path)
				}
				return fmt.Errorf("cannot write key file %s: %v", path, err)
			}
			fmt.Fprintln(cmd.Root().Writer, id.ID())
			return nil
		},
	}
}

func idCommand() *cli.Command {
	return &cli.Command{
		Name:  "id",
		Usage: "print the peer ID of an identity key: the client's in the state dir, or --role exit, or --key FILE",
		Flags: []cli.Flag{
			stringFlag("key", "", "read the key from `FILE` (default: the role's key in the state dir)"),
			stringFlag("state-dir", "", "the state `DIR` whose key to read (default: swarmvpn under the user's config directory)"),
			&cli.StringFlag{Name: "role", Value: "client", Usage: "whose key in the state dir: client or exit"},
		},
		Action: func(_ context.Context, cmd *cli.Command) error {
			path := cmd.String("key")
			if path == "" {
				role := cmd.String("role")
				if role != "client" && role != "exit" {
					return fmt.Errorf("--role %q: want client or exit", role)
				}
				dir, err := stateDir(cmd)
				if err != nil {
					return err
				}
				path = filepath.Join(dir, role+".key")
				if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("no %s key in %s yet: 'swarmvpn %s' creates it on first run (or name a key with --key FILE)",
						role, dir, map[string]string{"client": "connect", "exit": "exit"}[role])
				}
			}
			id, err := readKey(path)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.Root().Writer, id.ID())
			return nil
		},
	}
}
