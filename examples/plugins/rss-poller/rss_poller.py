#!/usr/bin/env python3
"""The `rss-poller` example plugin: an EPHEMERAL poller (one process per tick), in Python.

The host spawns it for one tick, writes ONE JSON-RPC line to its stdin,

    {"jsonrpc":"2.0","id":1,"method":"poll_tick","params":{"kind":"rss","job_id":...,
     "agent_id":...,"cursor":<base64url without padding, or null>,"config":{...},
     "now":"2026-11-23T12:00:00.000+00:00","interval_hint_secs":60}}

and closes stdin. The plugin writes ONE reply line to stdout and exits:

    {"jsonrpc":"2.0","id":1,"result":{"next_cursor":"cG9zdC0z","next_interval_secs":600,
     "metrics":{"items_seen":3,"items_dispatched":2}}}

or `{"jsonrpc":"2.0","id":1,"error":{"code":...,"message":...}}`, where -32002 means the job can
never succeed (Permanent), -32602 that its config is wrong (Config), anything else that the next
tick may succeed (Transient).

It is deterministic and needs no network: it "fetches" a fixed feed of seven posts. The cursor is
the id of the last post seen (`post-3`, base64url-encoded); a tick sees the posts after it, at
most `batch` of them, and "dispatches" those whose tag is in `tags`.

Job config (all optional):
  feed   "example" (default); "gone" answers -32002 (the feed returned 410 Gone)
  batch  posts seen per tick, 1..50 (default 3)
  tags   only posts with one of these tags are dispatched (default: every post)
"""
import base64
import binascii
import json
import sys

FEED = [
    ("post-1", "release", "Release 1.0"),
    ("post-2", "blog", "Design notes"),
    ("post-3", "release", "Release 1.1"),
    ("post-4", "blog", "Meetup recap"),
    ("post-5", "release", "Release 1.2"),
    ("post-6", "security", "Security advisory"),
    ("post-7", "release", "Release 2.0"),
]
PERMANENT = -32002
CONFIG = -32602
CATCHING_UP_SECS = 1
CAUGHT_UP_SECS = 600


class TickError(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


def encode_cursor(text):
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor):
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise TickError(CONFIG, "cursor %r is not URL-safe base64" % cursor)


def tick(params):
    config = params.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise TickError(CONFIG, "config must be an object")
    feed = config.get("feed", "example")
    if feed == "gone":
        raise TickError(PERMANENT, "feed `gone` answered 410 Gone; stop polling it")
    if feed != "example":
        raise TickError(CONFIG, "unknown feed %r (this example only knows `example` and `gone`)" % (feed,))
    batch = config.get("batch", 3)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 50:
        raise TickError(CONFIG, "batch must be an integer from 1 to 50, got %r" % (batch,))
    tags = config.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise TickError(CONFIG, "tags must be a list of strings")

    ids = [post_id for post_id, _, _ in FEED]
    cursor = params.get("cursor")
    start = 0
    if isinstance(cursor, str) and cursor != "":
        last = decode_cursor(cursor)
        if last not in ids:
            raise TickError(CONFIG, "cursor names %r, which is not a post of the feed" % last)
        start = ids.index(last) + 1

    seen = FEED[start:start + batch]
    dispatched = [post for post in seen if tags is None or post[1] in tags]
    for post_id, tag, title in dispatched:
        sys.stderr.write("rss-poller: dispatching %s [%s] %s\n" % (post_id, tag, title))
    more = start + len(seen) < len(FEED)
    return {
        # No new post: null keeps the host's cursor as it is.
        "next_cursor": encode_cursor(seen[-1][0]) if seen else None,
        "next_interval_secs": CATCHING_UP_SECS if more else CAUGHT_UP_SECS,
        "metrics": {"items_seen": len(seen), "items_dispatched": len(dispatched)},
    }


def main():
    line = sys.stdin.readline()
    if not line.strip():
        sys.stderr.write("rss-poller: no tick request on stdin\n")
        return 1
    request_id = None
    try:
        request = json.loads(line)
        request_id = request.get("id") if isinstance(request, dict) else None
        params = request.get("params") if isinstance(request, dict) else None
        if not isinstance(request, dict) or request.get("method") != "poll_tick" or not isinstance(params, dict):
            raise TickError(-32600, "expected a poll_tick request with params")
        reply = {"result": tick(params)}
    except ValueError:
        reply = {"error": {"code": -32700, "message": "the tick request is not JSON"}}
    except TickError as e:
        reply = {"error": {"code": e.code, "message": e.message}}
    sys.stdout.write(json.dumps(dict(jsonrpc="2.0", id=request_id, **reply), separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
