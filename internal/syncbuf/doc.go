// Package syncbuf is a bytes.Buffer that one goroutine may write while
// another reads it: the log destination tests read while the code they
// test is logging.
//
// syncbuf imports nothing from swarmvpn.
package syncbuf
