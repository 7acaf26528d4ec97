package link

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// PeerID names a peer: it is the peer's ed25519 public key, so anything the
// peer signs can be checked against its ID alone. Its text form is 52
// characters of lowercase base32 without padding.
type PeerID [ed25519.PublicKeySize]byte

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// idTextLen is the length of a PeerID in text form.
var idTextLen = idEncoding.EncodedLen(ed25519.PublicKeySize)

func (id PeerID) String() string {
	return strings.ToLower(idEncoding.EncodeToString(id[:]))
}

// Short returns the first 8 characters of the ID, for logs.
func (id PeerID) Short() string { return id.String()[:8] }

// MarshalText implements encoding.TextMarshaler.
func (id PeerID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *PeerID) UnmarshalText(b []byte) error {
	p, err := ParsePeerID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// PublicKey returns the ed25519 key the ID stands for.
func (id PeerID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(id[:]) }

// ParsePeerID parses the text form of a PeerID.
func ParsePeerID(s string) (PeerID, error) {
	var id PeerID
	if len(s) != idTextLen {
		return id, fmt.Errorf("peer ID %q: want %d base32 characters, have %d", s, idTextLen, len(s))
	}
	b, err := idEncoding.DecodeString(strings.ToUpper(s))
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("peer ID %q is not valid base32", s)
	}
	copy(id[:], b)
	return id, nil
}

// Identity is a peer's long-term ed25519 key.
type Identity struct {
	key ed25519.PrivateKey

	certMu   sync.Mutex       // guards the self-signed certificate below
	cert     *tls.Certificate // made by selfSigned
	certName string
}

// NewIdentity generates a fresh identity.
func NewIdentity() (*Identity, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Identity{key: key}, nil
}

// ID returns the identity's peer ID.
func (i *Identity) ID() PeerID {
	return PeerID(i.key.Public().(ed25519.PublicKey))
}

// Sign signs msg with the identity key.
func (i *Identity) Sign(msg []byte) []byte { return ed25519.Sign(i.key, msg) }

const pemType = "PRIVATE KEY"

// Save writes the identity to path as a PKCS #8 PEM file readable only by its
// owner. It refuses to overwrite an existing file.
func (i *Identity) Save(path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(i.key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: pemType, Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// LoadIdentity reads an identity written by Save.
func LoadIdentity(path string) (*Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != pemType {
		return nil, fmt.Errorf("%s is not a PEM %q file", path, pemType)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T key, want ed25519", path, k)
	}
	return &Identity{key: key}, nil
}

// LoadOrCreateIdentity loads the identity at path, creating it first when the
// file does not exist. created reports whether it did.
func LoadOrCreateIdentity(path string) (id *Identity, created bool, err error) {
	id, err = LoadIdentity(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return id, false, err
	}
	if id, err = NewIdentity(); err != nil {
		return nil, false, err
	}
	if err := id.Save(path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			id, err = LoadIdentity(path)
			return id, false, err
		}
		return nil, false, err
	}
	return id, true, nil
}
