package link

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"strings"

	utls "github.com/refraction-networking/utls"
)

// A client's ClientHello is the one message of a link a censor sees whole
// and in the clear, so it is a browser's: uTLS writes Chrome 131's hello
// (cipher suites, extensions shuffled per connection as Chrome does,
// GREASE, the X25519MLKEM768 key share, ALPS, ALPN h2 and http/1.1), with
// a server name, as Chrome sends it when Encrypted Client Hello is turned
// off (the EncryptedClientHelloEnabled policy): without the GREASE ECH
// extension. DPI engines whose tables predate ECH, such as the nDPI of
// Debian 12, flag that extension (and Chrome 133's new ALPS code point) as
// suspicious, and some censors block ECH outright. The capture test in
// cmd/swarmvpn checks the hello against nDPI.
//
// The server name (SNI) follows one rule, in this order:
//   - Config.ServerName when set;
//   - the exit address's host when it is a DNS name (an exit with its own
//     domain; its certificate then matches);
//   - otherwise a host name derived from the exit's peer ID (HostName),
//     which the exit also writes into its self-signed certificate, so that
//     every client of an exit names the same host and a prober that uses
//     that name gets a certificate for it;
//   - with no peer ID known, a name derived the same way from the address.
//
// A censor therefore learns the name and, by probing, the certificate; it
// does not learn that the name belongs to an exit unless it already knows
// the exit's peer ID. A derived name is not registered in the DNS: a
// censor that resolves every SNI it sees can notice that, which only a real
// domain avoids.
var chromeHello = utls.HelloChrome_131

// chromeSpec returns the hello for one connection: Chrome's, shuffled
// afresh, without GREASE ECH.
func chromeSpec() (*utls.ClientHelloSpec, error) {
	spec, err := utls.UTLSIdToSpec(chromeHello)
	if err != nil {
		return nil, err
	}
	ext := spec.Extensions[:0]
	for _, e := range spec.Extensions {
		if _, ech := e.(*utls.GREASEEncryptedClientHelloExtension); !ech {
			ext = append(ext, e)
		}
	}
	spec.Extensions = ext
	return &spec, nil
}

// serverName returns the SNI for a dial to exit, by the rule above.
func serverName(exit ExitAddr) string {
	host, _, err := net.SplitHostPort(exit.Addr)
	if err == nil && host != "" && net.ParseIP(strings.Trim(host, "[]")) == nil && strings.Contains(host, ".") {
		return strings.TrimSuffix(host, ".")
	}
	if exit.ID != (PeerID{}) {
		return HostName(exit.ID)
	}
	return hostNameOf([]byte("addr\x00" + exit.Addr))
}

// HostName returns the ordinary-looking host name derived from a peer ID:
// the SNI clients send to an exit reached by IP address, and the name in
// the exit's self-signed certificate.
func HostName(id PeerID) string { return hostNameOf(append([]byte("id\x00"), id[:]...)) }

// hostNameOf makes a pronounceable name of three to five syllables under a
// common top-level domain from the hash of seed.
func hostNameOf(seed []byte) string {
	h := sha256.Sum256(seed)
	const consonants, vowels = "bcdfghklmnprstvz", "aeiou"
	tlds := []string{"com", "net", "org", "io", "com", "net"}
	var b strings.Builder
	syllables := 3 + int(h[0]%3)
	for i := range syllables {
		b.WriteByte(consonants[h[1+2*i]%byte(len(consonants))])
		b.WriteByte(vowels[h[2+2*i]%byte(len(vowels))])
	}
	if h[12]%3 == 0 {
		b.WriteByte(consonants[h[13]%byte(len(consonants))])
	}
	b.WriteByte('.')
	b.WriteString(tlds[h[14]%byte(len(tlds))])
	return b.String()
}

// chromeClient runs a TLS handshake on conn with Chrome's ClientHello.
// The server's certificate is not judged here: the exit proves its peer ID
// inside the channel (see auth.go), since a browser's hello cannot accept
// a certificate with an ed25519 key.
func chromeClient(ctx context.Context, conn net.Conn, name string) (*utls.UConn, error) {
	tc := &utls.Config{
		ServerName:         name,
		InsecureSkipVerify: true,
		// Full-size records from the first byte: a link carries bulk data.
		DynamicRecordSizingDisabled: true,
	}
	spec, err := chromeSpec()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("client hello: %w", err)
	}
	uc := utls.UClient(conn, tc, utls.HelloCustom)
	if err := uc.ApplyPreset(spec); err != nil {
		conn.Close()
		return nil, fmt.Errorf("client hello: %w", err)
	}
	if err := uc.HandshakeContext(ctx); err != nil {
		uc.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if v := uc.ConnectionState().Version; v != utls.VersionTLS13 {
		uc.Close()
		return nil, fmt.Errorf("tls handshake: the exit negotiated TLS %#x, want 1.3", v)
	}
	// Chrome's hello carries renegotiation_info, so uTLS switched
	// renegotiation on, and with it off the exporter the proofs need. TLS
	// 1.3 has no renegotiation: switch it back off before any read.
	tc.Renegotiation = utls.RenegotiateNever
	return uc, nil
}
