// Package control is the control socket of a running swarmvpn process: a
// unix socket in its state dir, private to its user, where each connection
// may name its request in one line ("status", or "check" to run the
// process's check first) and gets one JSON document (the process's status),
// then is closed. The client and the exit each serve one; `swarmvpn status`
// reads them.
//
// control imports nothing of swarmvpn but internal/listener.
package control
