package wire

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
)

// Status is the exit's answer to a request. The values are those of the
// SOCKS5 reply field (RFC 1928 §6), so a status maps one-to-one onto the
// reply the client's SOCKS5 proxy sends.
type Status uint8

const (
	StatusOK                  Status = 0
	StatusGeneralFailure      Status = 1
	StatusNotAllowed          Status = 2 // refused by the exit's policy
	StatusNetworkUnreachable  Status = 3 // also: the client has no link to an exit
	StatusHostUnreachable     Status = 4 // also: the name does not resolve
	StatusConnectionRefused   Status = 5
	StatusTimeout             Status = 6 // SOCKS5 "TTL expired"
	StatusKindNotSupported    Status = 7 // SOCKS5 "command not supported"
	StatusAddrTypeUnsupported Status = 8

	// Refusals of a forward request (kind 4) by their reason. SOCKS5
	// leaves reply values from 9 unassigned; these never answer a connect
	// or udp request, so no SOCKS5 client sees them.
	StatusForwardCap       Status = 9  // the client holds as many forwarded ports as the exit allows
	StatusPortsExhausted   Status = 10 // no port of the exit's range can be lent now
	StatusForwardRateLimit Status = 11 // the client's network created its share of leases this hour
)

var statusText = [...]string{
	StatusOK:                  "succeeded",
	StatusGeneralFailure:      "general failure",
	StatusNotAllowed:          "not allowed by the exit's policy",
	StatusNetworkUnreachable:  "network unreachable",
	StatusHostUnreachable:     "host unreachable",
	StatusConnectionRefused:   "connection refused",
	StatusTimeout:             "timed out",
	StatusKindNotSupported:    "request kind not supported",
	StatusAddrTypeUnsupported: "address type not supported",
	StatusForwardCap:          "the client holds as many forwarded ports as the exit allows",
	StatusPortsExhausted:      "no forwarded port free at the exit",
	StatusForwardRateLimit:    "too many new forwarded ports for the client's network this hour",
}

func (s Status) String() string {
	if int(s) < len(statusText) {
		return statusText[s]
	}
	return "status " + strconv.Itoa(int(s))
}

// Error is an error that carries a Status.
type Error struct {
	Status Status
	Err    error // optional cause
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Status.String() + ": " + e.Err.Error()
	}
	return e.Status.String()
}

func (e *Error) Unwrap() error { return e.Err }

// StatusOf classifies err: an *Error gives its own status; errors from
// dialing and resolving give the status SOCKS5 would use for them; nil gives
// StatusOK; anything else StatusGeneralFailure.
func StatusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Status
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return StatusHostUnreachable
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return StatusConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return StatusNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return StatusHostUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT):
		return StatusTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return StatusTimeout
	}
	return StatusGeneralFailure
}
