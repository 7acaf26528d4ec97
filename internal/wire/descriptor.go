package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A signed descriptor travels as a self-delimiting blob, so that several
// can follow one another on a stream. Integers are big-endian:
//
//	+-----+---------+--------+----------+----------+
//	| VER | BODYLEN | SIGLEN |   BODY   |   SIG    |
//	+-----+---------+--------+----------+----------+
//	|  1  |    2    |   1    | BODYLEN  |  SIGLEN  |
//
// VER is 1. SIGLEN is 64, an ed25519 signature. BODYLEN is at least 1 and
// the whole blob at most MaxDescriptorLen bytes. What BODY holds and what SIG
// signs is the business of the discovery package.

const (
	// MaxDescriptorLen bounds a descriptor blob, header and signature
	// included.
	MaxDescriptorLen = 8192
	// DescriptorSigLen is the length of the signature: ed25519's.
	DescriptorSigLen = 64
	// MaxDescriptorBody is the longest body a blob can carry.
	MaxDescriptorBody = MaxDescriptorLen - descriptorHeaderLen - DescriptorSigLen

	descriptorVersion   = 1
	descriptorHeaderLen = 4 // VER, BODYLEN (2), SIGLEN
)

// ErrDescriptorBlob is wrapped by every framing error of a descriptor blob.
var ErrDescriptorBlob = errors.New("malformed descriptor blob")

// AppendDescriptor appends the blob that carries body and sig.
func AppendDescriptor(b, body, sig []byte) ([]byte, error) {
	if len(body) == 0 || len(body) > MaxDescriptorBody {
		return b, fmt.Errorf("%w: body of %d bytes, want 1 to %d", ErrDescriptorBlob, len(body), MaxDescriptorBody)
	}
	if len(sig) != DescriptorSigLen {
		return b, fmt.Errorf("%w: signature of %d bytes, want %d", ErrDescriptorBlob, len(sig), DescriptorSigLen)
	}
	b = append(b, descriptorVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	b = append(b, byte(len(sig)))
	b = append(b, body...)
	return append(b, sig...), nil
}

// DescriptorLen is the length of the blob AppendDescriptor writes.
func DescriptorLen(body, sig []byte) int { return descriptorHeaderLen + len(body) + len(sig) }

// parseDescriptorHeader returns the lengths of body and signature that
// follow a header.
func parseDescriptorHeader(h []byte) (bodyLen, sigLen int, err error) {
	if h[0] != descriptorVersion {
		return 0, 0, fmt.Errorf("%w: version %d, want %d", ErrDescriptorBlob, h[0], descriptorVersion)
	}
	bodyLen = int(binary.BigEndian.Uint16(h[1:3]))
	sigLen = int(h[3])
	if bodyLen == 0 || bodyLen > MaxDescriptorBody {
		return 0, 0, fmt.Errorf("%w: body of %d bytes, want 1 to %d", ErrDescriptorBlob, bodyLen, MaxDescriptorBody)
	}
	if sigLen != DescriptorSigLen {
		return 0, 0, fmt.Errorf("%w: signature of %d bytes, want %d", ErrDescriptorBlob, sigLen, DescriptorSigLen)
	}
	return bodyLen, sigLen, nil
}

// ParseDescriptor parses a blob, which must be all of b, into its body and
// signature. They do not share memory with b.
func ParseDescriptor(b []byte) (body, sig []byte, err error) {
	if len(b) < descriptorHeaderLen {
		return nil, nil, fmt.Errorf("%w: %d bytes, shorter than a header", ErrDescriptorBlob, len(b))
	}
	bodyLen, sigLen, err := parseDescriptorHeader(b)
	if err != nil {
		return nil, nil, err
	}
	if want := descriptorHeaderLen + bodyLen + sigLen; len(b) != want {
		return nil, nil, fmt.Errorf("%w: %d bytes, the header says %d", ErrDescriptorBlob, len(b), want)
	}
	b = bytes.Clone(b[descriptorHeaderLen:])
	return b[:bodyLen:bodyLen], b[bodyLen:], nil
}

// ReadDescriptor reads one blob from r, reading no byte past it. It returns
// io.EOF, unwrapped, when r ends before the blob begins; a blob cut short is
// io.ErrUnexpectedEOF; a framing error wraps ErrDescriptorBlob.
func ReadDescriptor(r io.Reader) (body, sig []byte, err error) {
	var h [descriptorHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, nil, err
	}
	bodyLen, sigLen, err := parseDescriptorHeader(h[:])
	if err != nil {
		return nil, nil, err
	}
	b := make([]byte, bodyLen+sigLen)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, err
	}
	return b[:bodyLen:bodyLen], b[bodyLen:], nil
}
