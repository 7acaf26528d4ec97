// Package policy is the exit policy: which destinations an exit dials or
// sends datagrams to, judged on the address actually connected, and the
// summary of it that goes into the exit's descriptor.
//
// policy imports only internal/wire (for the status a refusal carries) and
// internal/netaddr (the table of special-purpose address ranges); it must
// not import any other package of swarmvpn.
package policy
