#!/usr/bin/python3
"""A tiny qBittorrent WebUI API client for the e2e suite (qBittorrent 4.5.2, API 2.8.x).

  qbt.py URL ready                   exit 0 once logging in works
  qbt.py URL setprefs JSON           POST app/setPreferences
  qbt.py URL pref KEY                print one preference
  qbt.py URL add TORRENT SAVEPATH    add a torrent
  qbt.py URL progress HASH           print the torrent's progress (0..1) and state
  qbt.py URL peers HASH              print the torrent's peers' IPs
  qbt.py URL trackers HASH           print the torrent's trackers: URL, status, message
  qbt.py URL shutdown                ask qBittorrent to quit

User/password: admin/adminadmin (4.5.2's default), or QBT_USER/QBT_PASS.
"""
import http.cookiejar
import json
import os
import sys
import urllib.parse
import urllib.request
import uuid


def opener(url):
    jar = http.cookiejar.CookieJar()
    op = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                     urllib.request.HTTPCookieProcessor(jar))
    data = urllib.parse.urlencode({"username": os.environ.get("QBT_USER", "admin"),
                                   "password": os.environ.get("QBT_PASS", "adminadmin")}).encode()
    req = urllib.request.Request(url + "/api/v2/auth/login", data=data, headers={"Referer": url})
    body = op.open(req, timeout=5).read().decode()
    if body.strip() != "Ok.":
        raise SystemExit("login failed: %r" % body)
    return op


def post(op, url, path, fields):
    req = urllib.request.Request(url + path, data=urllib.parse.urlencode(fields).encode(),
                                 headers={"Referer": url})
    return op.open(req, timeout=10).read().decode()


def get(op, url, path):
    req = urllib.request.Request(url + path, headers={"Referer": url})
    return op.open(req, timeout=10).read().decode()


def main():
    url, cmd, args = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3:]
    op = opener(url)
    if cmd == "ready":
        get(op, url, "/api/v2/app/version")
    elif cmd == "setprefs":
        post(op, url, "/api/v2/app/setPreferences", {"json": args[0]})
    elif cmd == "pref":
        print(json.loads(get(op, url, "/api/v2/app/preferences")).get(args[0]))
    elif cmd == "add":
        boundary = uuid.uuid4().hex
        with open(args[0], "rb") as f:
            tor = f.read()
        parts = [b"--" + boundary.encode(),
                 b'Content-Disposition: form-data; name="torrents"; filename="t.torrent"',
                 b"Content-Type: application/x-bittorrent", b"", tor,
                 b"--" + boundary.encode(),
                 b'Content-Disposition: form-data; name="savepath"', b"", args[1].encode(),
                 b"--" + boundary.encode() + b"--", b""]
        req = urllib.request.Request(url + "/api/v2/torrents/add", data=b"\r\n".join(parts),
                                     headers={"Referer": url,
                                              "Content-Type": "multipart/form-data; boundary=" + boundary})
        body = op.open(req, timeout=10).read().decode()
        if body.strip() != "Ok.":
            raise SystemExit("add failed: %r" % body)
    elif cmd == "progress":
        info = json.loads(get(op, url, "/api/v2/torrents/info?hashes=" + args[0]))
        if not info:
            print("0 missing")
        else:
            print(info[0]["progress"], info[0]["state"])
    elif cmd == "peers":
        d = json.loads(get(op, url, "/api/v2/sync/torrentPeers?hash=" + args[0]))
        for p in (d.get("peers") or {}).values():
            print(p.get("ip"), p.get("port"))
    elif cmd == "trackers":
        for tr in json.loads(get(op, url, "/api/v2/torrents/trackers?hash=" + args[0])):
            print(tr.get("url"), tr.get("status"), repr(tr.get("msg")))
    elif cmd == "shutdown":
        post(op, url, "/api/v2/app/shutdown", {})
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
