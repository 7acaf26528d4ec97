package wire

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Stream is the side of a link stream that Call and Respond need: a
// yamux stream is one.
type Stream interface {
	io.ReadWriter
	SetDeadline(t time.Time) error
}

// Call sends req on st and reads the answer, waiting at most timeout (or
// until ctx ends). Every error carries a Status: a request that cannot be
// encoded is StatusAddrTypeUnsupported; no answer is StatusTimeout when
// time ran out and StatusNetworkUnreachable otherwise, since it means the
// link failed, not the destination. A non-OK answer is returned as it is,
// without an error.
func Call(ctx context.Context, st Stream, req Request, timeout time.Duration) (Response, error) {
	var buf [MaxHeaderLen]byte
	b, err := req.AppendBinary(buf[:0])
	if err != nil {
		return Response{}, &Error{Status: StatusAddrTypeUnsupported, Err: err}
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()) })
	defer stop()
	if _, err := st.Write(b); err != nil {
		return Response{}, &Error{Status: StatusNetworkUnreachable, Err: err}
	}
	resp, err := ReadResponse(st)
	if err != nil {
		status := StatusNetworkUnreachable
		if StatusOf(err) == StatusTimeout {
			status = StatusTimeout
		}
		return Response{}, &Error{Status: status, Err: fmt.Errorf("no answer from the exit: %w", err)}
	}
	if !stop() {
		return Response{}, &Error{Status: StatusTimeout, Err: ctx.Err()}
	}
	st.SetDeadline(time.Time{})
	return resp, nil
}

// Respond writes resp to w in one write.
func Respond(w io.Writer, resp Response) error {
	var buf [MaxHeaderLen]byte
	b, err := resp.AppendBinary(buf[:0])
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
