package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/internal/link"
)

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "create an ed25519 identity key file (mode 0600) and print its peer ID",
		Flags: []cli.Flag{&cli.StringFlag{Name: "key", Usage: "write the key to `FILE`", Required: true}},
		Action: func(_ context.Context, cmd *cli.Command) error {
			path := cmd.String("key")
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
		Usage: "print the peer ID of an identity key file",
		Flags: []cli.Flag{&cli.StringFlag{Name: "key", Usage: "read the key from `FILE`", Required: true}},
		Action: func(_ context.Context, cmd *cli.Command) error {
			id, err := readKey(cmd.String("key"))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.Root().Writer, id.ID())
			return nil
		},
	}
}
