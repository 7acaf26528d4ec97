package main

import (
	"log/slog"
	"net"

	"github.com/urfave/cli/v3"

	"github.com/swarmvpn/swarmvpn/ui"
)

// uiFlags turn on the status page of a long-running role.
func uiFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("ui", "", "serve a live status page at http://`HOST:PORT`, e.g. 127.0.0.1:8119 (default: off; beyond loopback it needs --ui-pass)"),
		stringFlag("ui-pass", "", "require this `PASSWORD` for the status page (HTTP basic authentication, any user name)"),
	}
}

// checkUI refuses a status page others could reach without a password,
// before anything is created or opened.
func checkUI(cmd *cli.Command) error {
	if addr := cmd.String("ui"); addr != "" {
		return ui.CheckExposure(addr, cmd.String("ui-pass"), "--ui")
	}
	return nil
}

// listenUI opens the listener --ui asks for, or returns nil when the page
// is off.
func listenUI(cmd *cli.Command, log *slog.Logger) (net.Listener, error) {
	addr := cmd.String("ui")
	if addr == "" {
		return nil, nil
	}
	if err := checkUI(cmd); err != nil {
		return nil, err
	}
	ln, err := listen(addr, "--ui")
	if err != nil {
		return nil, err
	}
	log.Info("serving the status page", "url", "http://"+ln.Addr().String()+"/")
	return ln, nil
}
