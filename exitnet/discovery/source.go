package discovery

// Source says where a client learned of an exit.
type Source string

const (
	SourceStatic   Source = "static"   // named by the user
	SourceMDNS     Source = "mdns"     // seen on the LAN
	SourceExchange Source = "exchange" // passed on by another exit
	SourceCache    Source = "cache"    // kept from an earlier run
)

// SourceDHT: found on the BitTorrent Mainline DHT (an announce on the
// rendezvous hash, or the exit's BEP 44 item).
const SourceDHT Source = "dht"
