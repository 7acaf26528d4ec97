package client

import (
	"context"
	"net"

	"github.com/swarmvpn/swarmvpn/internal/control"
)

// ControlSocketName is the control socket's name in the state dir.
const ControlSocketName = "control.sock"

// CheckControlPath refuses a control socket path too long for a unix
// socket, with advice.
func CheckControlPath(path string) error { return control.CheckPath(path) }

// ListenControl opens the control socket at path (mode 0600), so that a
// caller can open every listener before it starts anything. A socket left
// by a dead client is replaced; one a live client answers on is an error.
// Closing the listener removes the socket.
func ListenControl(path string) (*net.UnixListener, error) { return control.Listen(path, "client") }

// Control socket requests (see internal/control): the Report, or a probe
// of the forwarded port first and then the Report.
const (
	RequestStatus = control.RequestStatus
	RequestCheck  = control.RequestCheck
)

// ServeControl answers status requests on ln, a listener ListenControl
// opened, until ctx ends: each connection gets one JSON document, report(),
// and is closed. It closes ln, and returns after all its goroutines have
// ended.
func ServeControl(ctx context.Context, ln net.Listener, report func() Report) error {
	return control.Serve(ctx, ln, report)
}

// ServeControlWith is ServeControl that also runs check(ctx) before the
// report when a connection asks for RequestCheck; check nil ignores such
// requests.
func ServeControlWith(ctx context.Context, ln net.Listener, report func() Report, check func(context.Context)) error {
	return control.ServeWith(ctx, ln, report, check)
}
