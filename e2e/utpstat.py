"""uTP peers for e2e/utpbench.sh: bench/utp.py's seeder and leecher, plus
libtorrent's uTP counters.

  utpstat.py seed TORRENT DIR --listen IP:PORT
  utpstat.py leech TORRENT DIR --listen IP:PORT --peer IP:PORT... [--socks IP:PORT] --timeout SECONDS

seed prints "utp NAME=VALUE..." (every utp.* session counter) once a second
while it seeds; leech runs bench/utp.py's leecher and then prints the same
line once, after "done" or "timeout". Both exit when their stdin closes.
LEECH_RCVBUF=BYTES in the environment sets the leecher's UDP receive buffer.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import libtorrent as lt  # noqa: E402
import utp  # noqa: E402

NAMES = [m.name for m in lt.session_stats_metrics() if m.name.startswith("utp.")]


def print_counters(values):
    utp.out("utp", *("%s=%d" % (n[4:], values.get(n, 0)) for n in NAMES))


def counters(ses, wait=2.0):
    """Posts the session's counters and prints them when they come."""
    ses.post_session_stats()
    for _ in range(int(wait / 0.05)):
        ses.wait_for_alert(50)
        for a in ses.pop_alerts():
            if isinstance(a, lt.session_stats_alert):
                print_counters(a.values)
                return


def seed(args):
    ses = utp.session(args.listen)
    h = utp.add(ses, args.torrent, args.dir)
    ready = False
    while not utp.stdin_closed():
        if not ready and h.status().is_seeding:
            utp.out("ready", ses.listen_port())
            ready = True
        if ready:
            counters(ses, 1.0)
        ses.wait_for_alert(1000)
        ses.pop_alerts()


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "seed":
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("torrent")
        p.add_argument("dir")
        p.add_argument("--listen", required=True)
        return seed(p.parse_args())
    if cmd == "leech":
        made = []
        if os.environ.get("LEECH_RCVBUF"):
            # the leecher's UDP receive buffer, in bytes (capped by
            # net.core.rmem_max), set when the session starts: changed
            # later, a proxied session crashes (libtorrent 2.0.8)
            lt_session = lt.session

            def sized(settings):
                settings["recv_socket_buffer_size"] = int(os.environ["LEECH_RCVBUF"])
                return lt_session(settings)
            utp.lt.session = sized
        orig = utp.session

        def keep(*a, **kw):
            s = orig(*a, **kw)
            made.append(s)
            return s
        utp.session = keep
        rc = utp.main()
        if made:
            counters(made[0])
        return rc
    return utp.main()


if __name__ == "__main__":
    sys.exit(main() or 0)
