"""libtorrent peers for swarmvpn bench's uTP workload (python3-libtorrent).

  utp.py make FILE TORRENT
  utp.py seed TORRENT DIR --listen IP:PORT
  utp.py leech TORRENT DIR --listen IP:PORT --peer IP:PORT... [--socks IP:PORT] --timeout SECONDS

Every session moves data over uTP only: TCP, DHT, LSD, UPnP and NAT-PMP are
off, and peers are added directly, with no tracker.

make writes a torrent of FILE and prints "made".
seed checks the data, then prints "ready PORT" and seeds; for each word
"stats" on its stdin it prints "stats LOSS TIMEOUTS": the uTP packets it
has taken as lost, and its retransmission timeouts, so far.
leech connects to each --peer (through the SOCKS5 proxy at --socks when
given, credentials in the environment: SOCKS_USER, SOCKS_PASS), prints
"progress DONE TOTAL" in bytes about four times a second, and once every
piece has arrived and passed its hash check "done TOTAL SECONDS PEERS", the
seconds counted from its first connection to a peer (not from its start: a
proxied session sets up its UDP association first, once for all torrents),
PEERS the number of peers that sent it data; after --timeout seconds it prints
"timeout DONE TOTAL" and exits 1.
Every command prints "alert ..." for libtorrent's errors, and seed and leech
exit when their stdin closes, so a bench that ends can never leave one behind.
"""
import argparse
import os
import select
import sys
import time

import libtorrent as lt


def out(*words):
    print(*words, flush=True)


def session(listen, socks=None):
    s = {
        "listen_interfaces": listen,
        "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_tcp": False, "enable_incoming_tcp": False,
        "enable_outgoing_utp": True, "enable_incoming_utp": True,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.connect_notification,
    }
    if socks:
        host, port = socks.rsplit(":", 1)
        kind = lt.proxy_type_t.socks5
        user, password = os.environ.get("SOCKS_USER", ""), os.environ.get("SOCKS_PASS", "")
        if user:
            kind = lt.proxy_type_t.socks5_pw
            s.update({"proxy_username": user, "proxy_password": password})
        s.update({"proxy_type": kind, "proxy_hostname": host.strip("[]"),
                  "proxy_port": int(port), "proxy_peer_connections": True,
                  "proxy_tracker_connections": True, "proxy_hostnames": True})
    return lt.session(s)


def stdin_words():
    """Returns the words waiting on stdin, or None once it has closed."""
    r, _, _ = select.select([0], [], [], 0)
    if not r:
        return []
    b = os.read(0, 4096)
    if not b:
        return None
    return b.decode(errors="replace").split()


def stdin_closed():
    return stdin_words() is None


def alerts(ses):
    """Returns whether the torrent has finished, and when the first peer
    connected (None: none yet); prints the session's uTP counters when
    they come."""
    finished, connected = False, None
    for a in ses.pop_alerts():
        if isinstance(a, lt.torrent_finished_alert):
            finished = True
        elif isinstance(a, lt.session_stats_alert):
            v = a.values
            out("stats", v.get("utp.utp_packet_loss", 0), v.get("utp.utp_timeout", 0))
        elif isinstance(a, lt.peer_connect_alert):
            connected = connected or time.monotonic()
        elif a.category() & lt.alert.category_t.error_notification:
            out("alert", a.what(), a.message())
    return finished, connected


def add(ses, torrent, path):
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = path
    return ses.add_torrent(atp)


def make(args):
    fs = lt.file_storage()
    lt.add_files(fs, args.file)
    t = lt.create_torrent(fs)
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(args.file)))
    with open(args.torrent, "wb") as f:
        f.write(lt.bencode(t.generate()))
    out("made")


def seed(args):
    ses = session(args.listen)
    h = add(ses, args.torrent, args.dir)
    ready = False
    while True:
        words = stdin_words()
        if words is None:
            break
        if "stats" in words:
            ses.post_session_stats()
        alerts(ses)
        if not ready and h.status().is_seeding:
            out("ready", ses.listen_port())
            ready = True
        ses.wait_for_alert(200)


def leech(args):
    ses = session(args.listen, args.socks)
    h = add(ses, args.torrent, args.dir)
    peers = []
    for p in args.peer:
        host, port = p.rsplit(":", 1)
        peers.append((host.strip("[]"), int(port)))
    start = time.monotonic()
    first = None  # the first connection to a peer
    deadline = start + args.timeout
    next_connect = start
    next_progress = start
    total = h.status().total_wanted
    senders = set()
    while time.monotonic() < deadline and not stdin_closed():
        now = time.monotonic()
        if now >= next_connect:
            # again every few seconds for a seeder not connected yet
            linked = {p.ip for p in h.get_peer_info()}
            for p in peers:
                if p not in linked and p not in senders:
                    h.connect_peer(p)
            next_connect = now + 3
        finished, connected = alerts(ses)
        first = first or connected
        for p in h.get_peer_info():
            if p.total_download > 0:
                senders.add(p.ip)
        st = h.status()
        if finished or st.is_seeding:
            took = time.monotonic() - (first or start)
            out("progress", st.total_wanted_done, total)
            if st.total_wanted_done != total or st.num_pieces != h.torrent_file().num_pieces():
                out("alert", "incomplete", st.total_wanted_done, total)
                return 1
            out("done", total, "%.6f" % took, len(senders))
            return 0
        if now >= next_progress:
            out("progress", st.total_wanted_done, total)
            next_progress = now + 0.25
        ses.wait_for_alert(50)
    out("timeout", h.status().total_wanted_done, total)
    return 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("file")
    m.add_argument("torrent")
    for name in ("seed", "leech"):
        c = sub.add_parser(name)
        c.add_argument("torrent")
        c.add_argument("dir")
        c.add_argument("--listen", required=True)
        if name == "leech":
            c.add_argument("--peer", action="append", required=True)
            c.add_argument("--socks")
            c.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    return {"make": make, "seed": seed, "leech": leech}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main() or 0)
