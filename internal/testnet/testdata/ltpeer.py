#!/usr/bin/python3
"""A libtorrent peer for swarmvpn's tests and end-to-end suite
(python3-libtorrent, Debian).

  ltpeer.py make FILE TORRENT            create a torrent for FILE
  ltpeer.py seed TORRENT DIR --listen IP:PORT
  ltpeer.py leech TORRENT DIR --listen IP:PORT [--peer IP:PORT] [--socks IP:PORT] [--utp-only|--tcp-only]

seed prints "ready PORT", then "peer IP:PORT" for every peer it sees.
leech prints "progress N" now and then, "peer IP:PORT" for every peer it
connects to, and "done" when the download is complete and verified, and
exits 0; it exits 1 after --timeout seconds. Without --peer it learns peers
only from the torrent's trackers.
Both exit when stdin closes, so the test that started them can never leak them.
"""
import argparse
import os
import select
import sys
import time

import libtorrent as lt


def out(*words):
    print(*words, flush=True)


def session(args):
    host, port = args.listen.rsplit(":", 1)
    s = {
        "listen_interfaces": "%s:%s" % (host, port),
        "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.peer_notification
        | lt.alert.category_t.connect_notification
        | lt.alert.category_t.status_notification,
    }
    if getattr(args, "utp_only", False):
        s.update({"enable_outgoing_tcp": False, "enable_incoming_tcp": False,
                  "enable_outgoing_utp": True, "enable_incoming_utp": True})
    if getattr(args, "tcp_only", False):
        s.update({"enable_outgoing_tcp": True, "enable_incoming_tcp": True,
                  "enable_outgoing_utp": False, "enable_incoming_utp": False})
    if getattr(args, "socks", None):
        ph, pp = args.socks.rsplit(":", 1)
        s.update({"proxy_type": lt.proxy_type_t.socks5, "proxy_hostname": ph,
                  "proxy_port": int(pp), "proxy_peer_connections": True,
                  "proxy_tracker_connections": True, "proxy_hostnames": True})
    if getattr(args, "rate", 0):
        s["upload_rate_limit"] = int(args.rate)
        # peers in 10.0.0.0/8 are "local": limits would not apply to them
        s["ignore_limits_on_local_network"] = False
    return lt.session(s)


def stdin_closed():
    r, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(r) and sys.stdin.read(1) == ""


def make(args):
    fs = lt.file_storage()
    lt.add_files(fs, args.file)
    t = lt.create_torrent(fs, 1 << 18)
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(args.file)))
    with open(args.torrent, "wb") as f:
        f.write(lt.bencode(t.generate()))


def infohash(args):
    out(str(lt.torrent_info(args.torrent).info_hash()))


def seed(args):
    ses = session(args)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(args.torrent)
    atp.save_path = args.dir
    atp.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(atp)
    out("ready", ses.listen_port())
    seen = set()

    def saw(ep):
        key = "%s:%d" % (ep[0], ep[1])
        if key not in seen:
            seen.add(key)
            out("peer", key)

    while not stdin_closed():
        for p in h.get_peer_info():
            saw(p.ip)
        for a in ses.pop_alerts():
            if isinstance(a, lt.peer_connect_alert):
                saw(a.endpoint)
            elif isinstance(a, lt.incoming_connection_alert):
                saw(a.endpoint)
        ses.wait_for_alert(200)


def leech(args):
    ses = session(args)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(args.torrent)
    atp.save_path = args.dir
    h = ses.add_torrent(atp)
    peer = None
    if args.peer:
        ph, pp = args.peer.rsplit(":", 1)
        peer = (ph, int(pp))
    deadline = time.time() + args.timeout
    last = -1
    next_connect = 0
    seen = set()

    def saw(ep):
        key = "%s:%d" % (ep[0], ep[1])
        if key not in seen:
            seen.add(key)
            out("peer", key)

    while time.time() < deadline and not stdin_closed():
        if peer and time.time() >= next_connect:
            h.connect_peer(peer)
            next_connect = time.time() + 5
        for p in h.get_peer_info():
            saw(p.ip)
        # before the status: a peer that delivered everything at once is
        # still named, by its connect alert
        for a in ses.pop_alerts():
            if isinstance(a, (lt.peer_connect_alert, lt.peer_disconnected_alert)):
                saw(a.endpoint)
            elif a.category() & lt.alert.category_t.error_notification:
                out("alert", a.what(), a.message())
        st = h.status()
        pct = int(st.progress * 100)
        if pct != last:
            out("progress", pct)
            last = pct
        if st.is_seeding:
            out("done")
            return 0
        ses.wait_for_alert(200)
    out("timeout")
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
        c.add_argument("--socks")
        c.add_argument("--utp-only", action="store_true")
        c.add_argument("--tcp-only", action="store_true")
        c.add_argument("--rate", type=int, default=0, help="upload rate limit, bytes/s")
        if name == "leech":
            c.add_argument("--peer")
            c.add_argument("--timeout", type=float, default=120)
    ih = sub.add_parser("infohash")
    ih.add_argument("torrent")
    args = p.parse_args()
    if args.cmd == "infohash":
        return infohash(args)
    if args.cmd == "make":
        return make(args)
    if args.cmd == "seed":
        return seed(args)
    return leech(args)


if __name__ == "__main__":
    sys.exit(main() or 0)
