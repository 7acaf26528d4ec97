package link

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Each side of a link proves its identity inside the TLS channel, in the
// first bytes it sends there (SPEC.md, "Link"). The proof signs a value
// exported from the TLS session (RFC 8446 §7.5), so it is valid for that
// one session: replayed into another, it fails. Nothing of it is in the
// clear.
//
//	client → exit:  TAG(16) MINVER(1) MAXVER(1) PEERID(32) PADLEN(2) PAD SIG(64)
//	exit → client:  TAG(16) VER(1)              PEERID(32) PADLEN(2) PAD SIG(64)
//
// TAG is exported too: the exit compares a connection's first bytes with
// the client TAG as they arrive, and hands the connection to its fallback
// web server at the first byte that differs, without waiting for more.

// Version is the link protocol version this package speaks (SPEC.md).
const Version = 2

// minVersion is the oldest link protocol version this package speaks.
const minVersion = 2

const (
	// exporterLabel is the TLS exporter label of the link protocol; it is
	// never sent.
	exporterLabel = "EXPORTER-swarmvpn link"
	exportLen     = 64 // client tag, exit tag, and 32 bytes only signed
	tagLen        = 16
	// maxPad bounds the padding either side accepts; each sends up to
	// sendPad, so the length of its first record varies.
	maxPad  = 1024
	sendPad = 400
	sigLen  = ed25519.SignatureSize
)

// signature contexts: a client's proof cannot stand for an exit's.
const (
	clientContext = "swarmvpn link client auth\x00"
	exitContext   = "swarmvpn link exit auth\x00"
)

// exporter is what a TLS connection offers to bind a proof to its session.
type exporter interface {
	ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error)
}

func exportKey(cs exporter) ([]byte, error) {
	ek, err := cs.ExportKeyingMaterial(exporterLabel, nil, exportLen)
	if err != nil {
		return nil, fmt.Errorf("tls exporter: %w", err)
	}
	return ek, nil
}

func clientTag(ek []byte) []byte { return ek[:tagLen] }
func exitTag(ek []byte) []byte   { return ek[tagLen : 2*tagLen] }

// errNotClient means a connection's first bytes are not a client's proof.
var errNotClient = errors.New("first bytes are not a client's")

// proof builds one side's message: tag, the version bytes, the identity's
// peer ID, padding, and the signature over context, ek and all of that.
func proof(id *Identity, ek, tag, versions []byte, context string) []byte {
	n, _ := rand.Int(rand.Reader, big.NewInt(sendPad+1))
	pad := int(n.Int64())
	peer := id.ID()
	msg := make([]byte, 0, tagLen+len(versions)+len(peer)+2+pad+sigLen)
	msg = append(msg, tag...)
	msg = append(msg, versions...)
	msg = append(msg, peer[:]...)
	msg = binary.BigEndian.AppendUint16(msg, uint16(pad))
	msg = append(msg, make([]byte, pad)...)
	return append(msg, id.Sign(signed(context, ek, msg))...)
}

func signed(context string, ek, msg []byte) []byte {
	b := make([]byte, 0, len(context)+len(ek)+len(msg))
	b = append(append(append(b, context...), ek...), msg...)
	return b
}

// readProof reads the rest of a proof whose tag has been read (and is in
// msg): the version bytes, the peer ID, padding and the signature, and
// checks the signature.
func readProof(r io.Reader, ek, msg []byte, nver int, context string) (versions []byte, peer PeerID, err error) {
	head := make([]byte, nver+len(peer)+2)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, peer, err
	}
	msg = append(msg, head...)
	pad := int(binary.BigEndian.Uint16(head[nver+len(peer):]))
	if pad > maxPad {
		return nil, peer, fmt.Errorf("proof padding of %d bytes, at most %d", pad, maxPad)
	}
	rest := make([]byte, pad+sigLen)
	if _, err := io.ReadFull(r, rest); err != nil {
		return nil, peer, err
	}
	msg = append(msg, rest[:pad]...)
	copy(peer[:], head[nver:])
	if !ed25519.Verify(peer.PublicKey(), signed(context, ek, msg), rest[pad:]) {
		return nil, peer, errors.New("proof signature does not verify")
	}
	return head[:nver], peer, nil
}

// readClientTag reads the first tagLen bytes from r, comparing each read
// with the client tag at once, so that a connection whose first bytes are
// not a client's is known from its first read.
func readClientTag(r io.Reader, ek []byte) ([]byte, error) {
	want := clientTag(ek)
	got := make([]byte, tagLen)
	for n := 0; n < tagLen; {
		k, err := r.Read(got[n:])
		if !bytes.Equal(got[n:n+k], want[n:n+k]) {
			return nil, errNotClient
		}
		n += k
		if err != nil && n < tagLen {
			return nil, err
		}
	}
	return got, nil
}

// HTTP/2 frame types an exit may send before its proof, as an HTTP/2
// server sends its SETTINGS at once (Config.H2Preface).
const (
	h2FrameSettings     = 0x4
	h2FrameWindowUpdate = 0x8
	h2FrameHeaderLen    = 9
	maxPrefaceFrames    = 8
	maxPrefaceFrame     = 1024
)

// readExitTag reads the exit's tag on the client side, skipping the HTTP/2
// SETTINGS and WINDOW_UPDATE frames an exit sends first on an h2
// connection. Any other bytes mean the exit did not accept this client.
func readExitTag(r io.Reader, ek []byte) ([]byte, error) {
	want := exitTag(ek)
	hdr := make([]byte, h2FrameHeaderLen)
	for range maxPrefaceFrames {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, err
		}
		if bytes.Equal(hdr, want[:h2FrameHeaderLen]) {
			got := make([]byte, tagLen)
			copy(got, hdr)
			if _, err := io.ReadFull(r, got[h2FrameHeaderLen:]); err != nil {
				return nil, err
			}
			if !bytes.Equal(got, want) {
				return nil, ErrRefused
			}
			return got, nil
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		stream := binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff
		if (hdr[3] != h2FrameSettings && hdr[3] != h2FrameWindowUpdate) || stream != 0 || length > maxPrefaceFrame {
			return nil, ErrRefused
		}
		if _, err := io.CopyN(io.Discard, r, int64(length)); err != nil {
			return nil, err
		}
	}
	return nil, ErrRefused
}
