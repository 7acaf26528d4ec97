package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/internal/lockfile"
)

// exitLockName is the exit's lock file in the state dir, held while it
// runs. The client holds its own (client.LockName), so one machine may run
// an exit and a client on one state dir.
const exitLockName = "exit.lock"

// lockExitState holds the state dir's exit lock when the exit uses the
// state dir (for its key, its forwarded port leases, or with nat set, its
// record of router mappings), so that a second exit with the same
// identity, leases or record stops at once: the record's next start
// deletes what it lists. nil when the state dir is not used.
func lockExitState(cmd *cli.Command, nat bool) (*lockfile.Lock, error) {
	if cmd.String("key") != "" && cmd.String("forward-ports") == "" && !nat {
		return nil, nil
	}
	dir, err := stateDir(cmd)
	if err != nil {
		return nil, err
	}
	l, err := lockfile.Acquire(filepath.Join(dir, exitLockName))
	if held, ok := errors.AsType[*lockfile.HeldError](err); ok {
		who := "another 'swarmvpn exit'"
		if held.PID != 0 {
			who += fmt.Sprintf(" (pid %d)", held.PID)
		}
		return nil, fmt.Errorf("the state dir %s is in use by %s: stop that exit, or give this one its own --state-dir", dir, who)
	}
	return l, err
}
