// Package control is the control socket of a running swarmvpn process: a
// unix socket in its state dir, private to its user, where each connection
// gets one JSON document (the process's status) and is closed. The client
// and the exit each serve one; `swarmvpn status` reads them.
//
// control imports nothing of swarmvpn.
package control
