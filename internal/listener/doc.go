// Package listener opens the TCP listeners the user names (a proxy, an exit,
// the metrics endpoint), turning the usual failures into one line of advice
// that names the setting to change, and tells whether a listen address
// stays on this machine.
//
// listener imports only the standard library; every swarmvpn package may
// import it.
package listener
