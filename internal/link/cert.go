package link

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"math/big"
	"time"
)

// An exit without a certificate of its own (Config.Certificate) presents a
// self-signed one that looks like a small site's: an ECDSA P-256 key (what
// browsers accept; an ed25519 certificate would fail a browser's hello and
// stand out to a prober), its host name (HostName of its peer ID, or
// Config.ServerName) as subject and SAN, and a year of validity that starts
// at a moment of its own, not at the same instant for every exit.
//
// The certificate proves nothing about the exit's identity: that proof is
// inside the channel. Its key is derived from the identity key, so the
// certificate a prober sees stays the same across restarts until it is
// renewed after a year.

// certLifetime is a self-signed certificate's validity.
const certLifetime = 365 * 24 * time.Hour

// certKey derives the exit's certificate key from its identity.
func (i *Identity) certKey() (*ecdsa.PrivateKey, error) {
	seed := i.key.Seed()
	d := sha256.Sum256(append([]byte("tls certificate key\x00"), seed...))
	for range 16 { // a hash is a valid P-256 scalar but for about 2^-32 of the time
		if k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:]); err == nil {
			return k, nil
		}
		d = sha256.Sum256(d[:])
	}
	return nil, fmt.Errorf("link: no certificate key derives from this identity")
}

// certValidity returns the validity period of the identity's self-signed
// certificate that covers now.
func (i *Identity) certValidity(now time.Time) (notBefore, notAfter time.Time) {
	id := i.ID()
	h := sha256.Sum256(append([]byte("tls certificate period\x00"), id[:]...))
	offset := time.Duration(binary.BigEndian.Uint64(h[:8])%uint64(certLifetime/time.Second)) * time.Second
	base := time.Unix(0, 0).Add(offset)
	k := now.Sub(base) / certLifetime
	notBefore = base.Add(k * certLifetime).UTC().Truncate(time.Second)
	return notBefore, notBefore.Add(certLifetime)
}

// selfSigned returns the identity's self-signed certificate for name valid
// at now, made once per validity period.
func (i *Identity) selfSigned(name string, now time.Time) (*tls.Certificate, error) {
	notBefore, notAfter := i.certValidity(now)
	i.certMu.Lock()
	defer i.certMu.Unlock()
	if c := i.cert; c != nil && i.certName == name && c.Leaf.NotBefore.Equal(notBefore) {
		return c, nil
	}
	key, err := i.certKey()
	if err != nil {
		return nil, err
	}
	sh := sha256.Sum256(fmt.Appendf(nil, "tls certificate serial\x00%s\x00%d", i.ID(), notBefore.Unix()))
	sh[0] &= 0x7f // positive
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sh[:16]),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("link: self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	i.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	i.certName = name
	return i.cert, nil
}
