// Package wire defines the bytes exchanged inside a swarmvpn link: the
// request that opens every stream, the exit's response, and the status codes
// they carry, and Call and Respond, which exchange them on a stream. SPEC.md
// beside this file documents the format.
//
// wire imports nothing from swarmvpn; every other package may import it.
package wire
