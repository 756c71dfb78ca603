#!/usr/bin/env python3
"""The `secrets` example plugin: a strictly serial secret source, in the devboy dialect.

It reads ONE JSON-RPC 2.0 request line from stdin, writes its ONE response line to stdout, and
only then reads the next line, so the host must send one call at a time (the host's policy for
it says `maxConcurrentRequests: 1`). Python standard library only; stdout is the protocol,
stderr is free-form (the host keeps an excerpt of it for the doctor).

Methods:
  secret_source.init {config?}  -> {"ok": true, "source": "example", "keys": <count>}
  secret_source.get {key}       -> {"value": "..."}
                                   error {"kind": "not-found", "detail": ...} for an unknown key
                                   error {"kind": "needs-credential", "detail": ...} for `locked`
                                   error {"kind": "invalid-params", "detail": ...} without a string key
  secret_source.list            -> {"keys": [...]} (sorted; `locked` included)
  health                        -> {"ok": true, "served": <requests answered so far>}
  initialize                    -> {"ok": true, "supportedMethods": [...]} (the worker dialect, so
                                   a host that does not know the devboy dialect can still start it)
  shutdown                      -> null, then exit 0
  anything else                 -> error {"code": -32601, "message": "Method not found: <name>"}

Errors are NOT `{code, message}` objects: like devboy's secret sources they are `{kind, detail}`
objects, which the host keeps whole as `PluginError.data`.

The values come from a small built-in table. `SECRETS_PLUGIN_OVERRIDES`, when the host passes it
(the manifest allow-lists it), is a JSON object whose string values replace or add entries.
Notifications are ignored; the plugin exits 0 on stdin EOF.
"""
import json
import os
import sys

BUILT_IN = {
    "api_token": "tok_example_0123456789",
    "db_password": "correct-horse-battery-staple",
    "smtp_password": "hunter2",
}
LOCKED_KEY = "locked"
METHODS = [
    "secret_source.init",
    "secret_source.get",
    "secret_source.list",
    "health",
    "shutdown",
]


def log(text):
    sys.stderr.write("secrets: " + text + "\n")
    sys.stderr.flush()


def load_secrets():
    secrets = dict(BUILT_IN)
    raw = os.environ.get("SECRETS_PLUGIN_OVERRIDES")
    if raw:
        try:
            overrides = json.loads(raw)
        except ValueError as e:
            log("ignoring SECRETS_PLUGIN_OVERRIDES, it is not JSON: %s" % e)
            overrides = {}
        if isinstance(overrides, dict):
            for key, value in overrides.items():
                if isinstance(value, str):
                    secrets[key] = value
        else:
            log("ignoring SECRETS_PLUGIN_OVERRIDES, it is not a JSON object")
    return secrets


def send(message):
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Fail(Exception):
    def __init__(self, error):
        Exception.__init__(self)
        self.error = error


def handle(method, params, secrets, state):
    p = params if isinstance(params, dict) else {}
    if method == "secret_source.init":
        return {"ok": True, "source": "example", "keys": len(secrets) + 1}
    if method == "secret_source.get":
        key = p.get("key")
        if not isinstance(key, str):
            raise Fail({"kind": "invalid-params", "detail": "`key` must be a string"})
        if key == LOCKED_KEY:
            raise Fail({"kind": "needs-credential", "detail": "the secret `locked` needs an unlock credential"})
        if key not in secrets:
            raise Fail({"kind": "not-found", "detail": "no secret named `%s`" % key})
        return {"value": secrets[key]}
    if method == "secret_source.list":
        return {"keys": sorted(list(secrets.keys()) + [LOCKED_KEY])}
    if method == "health":
        return {"ok": True, "served": state["served"]}
    if method == "initialize":
        return {"ok": True, "supportedMethods": METHODS}
    raise Fail({"code": -32601, "message": "Method not found: %s" % method})


def main():
    secrets = load_secrets()
    state = {"served": 0}
    stdin = sys.stdin.buffer
    while True:
        raw = stdin.readline()  # one line at a time: strictly serial
        if not raw:
            return 0  # stdin EOF: the host is done with us
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            log("ignoring a line that is not JSON: %s" % line[:200])
            continue
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            log("ignoring a message that is not a request: %s" % line[:200])
            continue
        if "id" not in message:
            continue  # a notification: nothing to answer
        request_id = message["id"]
        method = message["method"]
        if method == "shutdown":
            send({"jsonrpc": "2.0", "id": request_id, "result": None})
            return 0
        try:
            result = handle(method, message.get("params"), secrets, state)
            send({"jsonrpc": "2.0", "id": request_id, "result": result})
        except Fail as failure:
            send({"jsonrpc": "2.0", "id": request_id, "error": failure.error})
        except Exception as e:  # a bug here must not kill the source: answer and go on
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32603, "message": "Internal error: %s" % e}})
        state["served"] += 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        os._exit(0)  # the host closed our stdout: nothing left to say
    except KeyboardInterrupt:
        os._exit(130)
