package nat

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

const (
	// maxHTTPBody bounds a device description or a SOAP reply.
	maxHTTPBody = 64 << 10
	// description names our mappings in the router's list.
	description = "swarmvpn"

	upnpNoSuchEntry        = 714 // NoSuchEntryInArray
	upnpConflict           = 718 // ConflictInMappingEntry
	upnpOnlyPermanentLease = 725 // OnlyPermanentLeasesSupported

	// maxListed bounds the entries of the router's mapping list read (one
	// request each) when looking for mappings the router placed.
	maxListed = 1024
)

// igd is what the three kinds of WAN connection service have in common.
type igd interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string,
		internalPort uint16, internalClient string, enabled bool, description string, leaseSeconds uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	GetSpecificPortMappingEntryCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) (
		internalPort uint16, internalClient string, enabled bool, description string, leaseSeconds uint32, err error)
	GetGenericPortMappingEntryCtx(ctx context.Context, index uint16) (remoteHost string, externalPort uint16,
		protocol string, internalPort uint16, internalClient string, enabled bool, description string,
		leaseSeconds uint32, err error)
}

var (
	_ igd = (*internetgateway2.WANIPConnection1)(nil)
	_ igd = (*internetgateway2.WANIPConnection2)(nil)
	_ igd = (*internetgateway2.WANPPPConnection1)(nil)
)

// upnpGateway maps ports through a UPnP-IGD WAN connection service.
type upnpGateway struct {
	gw, local netip.Addr
	svc       igd
	v2        *internetgateway2.WANIPConnection2 // nil on IGDv1: no AddAnyPortMapping
	control   string                             // the control URL, for logs
}

var _ gateway = (*upnpGateway)(nil)

// discoverUPnP finds the gateway's WAN connection service: an SSDP search
// sent to the gateway, then its device description.
func discoverUPnP(ctx context.Context, gw, local netip.Addr) (*upnpGateway, error) {
	loc, err := ssdpSearch(ctx, gw)
	if err != nil {
		return nil, fmt.Errorf("upnp: %w", err)
	}
	hc := newHTTPClient()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("upnp: device description: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upnp: device description: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upnp: device description %s: status %d", loc, resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("upnp: device description %s: %w", loc, err)
	}
	u, err := upnpFromDescription(body, loc, gw, local)
	if err != nil {
		return nil, fmt.Errorf("upnp: device description %s: %w", loc, err)
	}
	return u, nil
}

// upnpFromDescription reads a root device description fetched from loc and
// returns a client for its first WAN connection service (IGDv2 first) whose
// control URL passes checkGatewayURL.
func upnpFromDescription(body []byte, loc *url.URL, gw, local netip.Addr) (*upnpGateway, error) {
	if len(body) > maxHTTPBody {
		return nil, errTooLarge
	}
	root := new(goupnp.RootDevice)
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.DefaultSpace = goupnp.DeviceXMLNamespace
	if err := dec.Decode(root); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	base := loc
	if root.URLBaseStr != "" {
		b, err := checkGatewayURL(strings.TrimSpace(root.URLBaseStr), gw)
		if err != nil {
			return nil, fmt.Errorf("URLBase: %w", err)
		}
		base = b
	}
	root.SetURLBase(base)

	var refused []error
	usable := func(sc *goupnp.ServiceClient) bool {
		if !sc.Service.ControlURL.Ok {
			refused = append(refused, fmt.Errorf("%s: no control URL", sc.Service.ServiceType))
			return false
		}
		u, err := checkGatewayURL(sc.SOAPClient.EndpointURL.String(), gw)
		if err != nil {
			refused = append(refused, fmt.Errorf("%s: control URL: %w", sc.Service.ServiceType, err))
			return false
		}
		sc.SOAPClient = soap.NewSOAPClient(*u)
		sc.SOAPClient.HTTPClient = *newHTTPClient()
		return true
	}
	g := &upnpGateway{gw: gw, local: local}
	if cs, err := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(root, loc); err == nil {
		for _, c := range cs {
			if usable(&c.ServiceClient) {
				g.svc, g.v2, g.control = c, c, c.SOAPClient.EndpointURL.String()
				return g, nil
			}
		}
	}
	if cs, err := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(root, loc); err == nil {
		for _, c := range cs {
			if usable(&c.ServiceClient) {
				g.svc, g.control = c, c.SOAPClient.EndpointURL.String()
				return g, nil
			}
		}
	}
	if cs, err := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(root, loc); err == nil {
		for _, c := range cs {
			if usable(&c.ServiceClient) {
				g.svc, g.control = c, c.SOAPClient.EndpointURL.String()
				return g, nil
			}
		}
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("no usable WAN connection service: %w", errors.Join(refused...))
	}
	return nil, errors.New("no WAN connection service")
}

func (u *upnpGateway) method() string      { return MethodUPnP }
func (u *upnpGateway) address() netip.Addr { return u.gw }

func (u *upnpGateway) externalAddr(ctx context.Context) (netip.Addr, error) {
	s, err := u.svc.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return netip.Addr{}, upnpError("GetExternalIPAddress", err)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, nil // none: reported as such by checkExternal
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, &refusedError{fmt.Errorf("upnp GetExternalIPAddress: %q is not an address", clip(s))}
	}
	return a.Unmap(), nil
}

func (u *upnpGateway) add(ctx context.Context, proto string, internal, want uint16, lifetime time.Duration) (uint16, time.Duration, error) {
	p := strings.ToUpper(proto)
	lease := uint32(lifetime / time.Second)
	client := u.local.String()
	err := u.svc.AddPortMappingCtx(ctx, "", want, p, internal, client, true, description, lease)
	if err == nil {
		return want, lifetime, nil
	}
	if faultCode(err) == upnpOnlyPermanentLease {
		// An old IGDv1: only leases without end. Renewals still run, and
		// Close deletes them.
		if err = u.svc.AddPortMappingCtx(ctx, "", want, p, internal, client, true, description, 0); err == nil {
			return want, 0, nil
		}
	}
	if u.v2 == nil || !isRefused(upnpError("AddPortMapping", err)) {
		return 0, 0, upnpError("AddPortMapping", err)
	}
	// IGDv2: let the router choose a free external port.
	// The record names want: were this run to end before it records
	// the port the router chose, the next one finds that mapping in the
	// router's list (list).
	got, err2 := u.v2.AddAnyPortMappingCtx(ctx, "", want, p, internal, client, true, description, lease)
	if err2 != nil {
		// A refusal only if the second is one: a second that got no
		// answer may have been made.
		return 0, 0, fmt.Errorf("%v; %w", upnpError("AddPortMapping", err), upnpError("AddAnyPortMapping", err2))
	}
	if got == 0 {
		return 0, 0, &refusedError{errors.New("upnp AddAnyPortMapping: router reserved port 0")}
	}
	return got, lifetime, nil
}

func (u *upnpGateway) remove(ctx context.Context, proto string, internal, external uint16) error {
	if err := u.svc.DeletePortMappingCtx(ctx, "", external, strings.ToUpper(proto)); err != nil {
		return upnpError("DeletePortMapping", err)
	}
	return nil
}

func (u *upnpGateway) localAddr() netip.Addr { return u.local }

// holds asks the router what its external port r.External forwards to:
// the mapping is ours to delete only if it still forwards to r.Client and
// r.Internal, under our description (or none, for a router that keeps no
// descriptions).
func (u *upnpGateway) holds(ctx context.Context, r recorded) (bool, error) {
	internal, client, _, desc, _, err := u.svc.GetSpecificPortMappingEntryCtx(ctx, "", r.External, strings.ToUpper(r.Proto))
	if faultCode(err) == upnpNoSuchEntry {
		return false, nil
	}
	if err != nil {
		return false, upnpError("GetSpecificPortMappingEntry", err)
	}
	a, perr := netip.ParseAddr(strings.TrimSpace(client))
	desc = strings.TrimSpace(desc)
	return perr == nil && a.Unmap() == r.Client && internal == r.Internal && (desc == description || desc == ""), nil
}

// list reads the router's mapping list (GetGenericPortMappingEntry, index
// by index until the router answers with a fault, SpecifiedArrayIndexInvalid
// at the end) for the mappings to this host under our description, each
// once. Only an IGDv2 router places a mapping at an external port it
// chooses. The list comes from the network: it reads at most maxListed
// entries, each within each, and stops when ctx ends; what it read then is
// returned with errListCut.
func (u *upnpGateway) list(ctx context.Context, each time.Duration) ([]recorded, error) {
	if u.v2 == nil {
		return nil, nil
	}
	var out []recorded
	for i := range maxListed {
		cctx, cancel := context.WithTimeout(ctx, each)
		host, ext, proto, internal, client, _, desc, _, err := u.svc.GetGenericPortMappingEntryCtx(cctx, uint16(i))
		cancel()
		if faultCode(err) != 0 {
			return out, nil
		}
		if err != nil && ctx.Err() != nil {
			return out, fmt.Errorf("%w after %d entries: %w", errListCut, i, ctx.Err())
		}
		if err != nil {
			return nil, upnpError("GetGenericPortMappingEntry", err)
		}
		r := recorded{Method: MethodUPnP, Gateway: u.gw, Client: u.local, Proto: strings.ToLower(strings.TrimSpace(proto)),
			Internal: internal, External: ext}
		a, perr := netip.ParseAddr(strings.TrimSpace(client))
		// We map from any remote host (""); a mapping restricted to one
		// is not ours, and deleting by external port would name another.
		if perr == nil && a.Unmap() == u.local && strings.TrimSpace(desc) == description &&
			strings.TrimSpace(host) == "" && r.check() == nil && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, fmt.Errorf("%w at %d entries", errListCut, maxListed)
}

// errListCut: the router's mapping list was not read to its end.
var errListCut = errors.New("router's list of mappings read in part")

// upnpError describes err from a UPnP action: a SOAP fault is the router
// refusing (a refusedError), anything else is the router not answering.
func upnpError(action string, err error) error {
	var re *refusedError
	if errors.As(err, &re) {
		return err
	}
	var f *soap.SOAPFaultError
	if errors.As(err, &f) {
		return &refusedError{fmt.Errorf("upnp %s: router refused: error %d %s",
			action, f.Detail.UPnPError.Errorcode, clip(f.Detail.UPnPError.ErrorDescription))}
	}
	return fmt.Errorf("upnp %s: %w", action, err)
}

// faultCode returns the UPnP error code of a SOAP fault, or 0.
func faultCode(err error) int {
	var f *soap.SOAPFaultError
	if errors.As(err, &f) {
		return f.Detail.UPnPError.Errorcode
	}
	return 0
}

// newHTTPClient returns the HTTP client used towards the gateway: no proxy
// from the environment, no redirects (a redirect could point anywhere), a
// bounded time and bounded bodies.
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: limitTransport{&http.Transport{
			Proxy:                  nil,
			DialContext:            (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
			DisableKeepAlives:      true,
			ResponseHeaderTimeout:  5 * time.Second,
			MaxResponseHeaderBytes: 16 << 10,
			DisableCompression:     true,
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

// limitTransport fails reading a body longer than maxHTTPBody.
type limitTransport struct{ rt http.RoundTripper }

func (t limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{Reader: &limitedReader{r: resp.Body, n: maxHTTPBody}, Closer: resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// clip shortens a string from the gateway before it goes into a message.
func clip(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
