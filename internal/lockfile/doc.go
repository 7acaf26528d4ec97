// Package lockfile holds a lock file for as long as a process runs, so
// that two processes never share what the lock guards (a state dir: its
// identity, control socket and forwarded port leases). The file records
// the holder's process ID, which a process that finds the lock held
// reports.
//
// On unix systems the lock is flock(2): the kernel releases it when the
// holder exits, however it exits, so a file left behind is no obstacle.
// Elsewhere the file only records the PID and excludes nothing.
//
// lockfile imports only the standard library and golang.org/x/sys; every
// swarmvpn package may import it.
package lockfile
