/**
 * The files `plugin-host init` writes: a manifest and a starter plugin, in Node (dependency-free
 * JavaScript) or Python (standard library only).
 *
 * Each starter plugin speaks the host's wire format (JSON-RPC 2.0, one JSON object per line on
 * stdin/stdout) and answers `initialize` (`{ok: true, supportedMethods}`), `echo`, `health` and
 * `shutdown`; it writes each reply line at once, logs to stderr only, and exits when stdin ends.
 * It depends on nothing but its runtime, so it keeps working wherever the user moves it.
 *
 * @since 0.1.0
 */

/**
 * The languages `init` can scaffold.
 *
 * @category models
 */
export const languages = ["node", "python"] as const
export type Language = (typeof languages)[number]

/**
 * The executable's file name for each language.
 *
 * @category constants
 */
export const executableNames: Readonly<Record<Language, string>> = {
  node: "plugin.mjs",
  python: "plugin.py"
}

const node = (name: string): string =>
  `#!/usr/bin/env node
// The \`${name}\` plugin, hosted by effect-plugin-host (https://www.npmjs.com/package/effect-plugin-host).
//
// Wire format: JSON-RPC 2.0, one JSON object per line. Requests arrive on stdin, replies go to
// stdout, and stdout carries nothing else: log to stderr (the host keeps an excerpt of it).
//
// Methods:
//   initialize   -> {ok: true, supportedMethods}  (the host's \`Handshake.initialize()\`)
//   echo <any>   -> the params, unchanged
//   health       -> {ok: true, uptimeMs}
//   shutdown     -> null, then exit 0
//   other        -> error {code: -32601, message: "Method not found: <name>"}
// Notifications (no \`id\`) get no answer. The plugin exits 0 when stdin ends.
//
// After editing this file, update the manifest's checksum:
//   plugin-host checksum --write ${name}.toml
import { createInterface } from "node:readline"

const startedAt = Date.now()
const methods = ["initialize", "echo", "health", "shutdown"]

const log = (text) => process.stderr.write(\`${name}: \${text}\\n\`)

// One line per message; process.stdout.write hands each line to the pipe right away.
const send = (message) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\\n")

const handlers = {
  initialize: () => ({ ok: true, supportedMethods: methods }),
  echo: (params) => params ?? null,
  health: () => ({ ok: true, uptimeMs: Date.now() - startedAt })
}

let stopping = false
const lines = createInterface({ input: process.stdin })

lines.on("line", (line) => {
  if (stopping || line.trim() === "") return
  let message
  try {
    message = JSON.parse(line)
  } catch {
    log(\`ignoring a line that is not JSON: \${line.slice(0, 200)}\`)
    return
  }
  if (typeof message !== "object" || message === null || typeof message.method !== "string") return
  if (!("id" in message)) return // a notification: nothing to answer
  const { id, method, params } = message
  if (method === "shutdown") {
    send({ id, result: null })
    stopping = true
    lines.close()
    return
  }
  const handler = handlers[method]
  if (handler === undefined) {
    send({ id, error: { code: -32601, message: \`Method not found: \${method}\` } })
    return
  }
  try {
    send({ id, result: handler(params) })
  } catch (error) {
    send({ id, error: { code: -32603, message: \`Internal error: \${error instanceof Error ? error.message : String(error)}\` } })
  }
})

// stdin ended (or \`shutdown\`): exit once every reply has reached the pipe.
lines.on("close", () => process.stdout.write("", () => process.exit(0)))

log("ready")
`

const python = (name: string): string =>
  `#!/usr/bin/env python3
"""The \`${name}\` plugin, hosted by effect-plugin-host (https://www.npmjs.com/package/effect-plugin-host).

Wire format: JSON-RPC 2.0, one JSON object per line. Requests arrive on stdin, replies go to
stdout, and stdout carries nothing else: log to stderr (the host keeps an excerpt of it).

Methods:
  initialize   -> {"ok": true, "supportedMethods": [...]}  (the host's Handshake.initialize())
  echo <any>   -> the params, unchanged
  health       -> {"ok": true, "uptimeMs": ...}
  shutdown     -> null, then exit 0
  other        -> error {"code": -32601, "message": "Method not found: <name>"}
Notifications (no "id") get no answer. The plugin exits 0 when stdin ends.

After editing this file, update the manifest's checksum:
  plugin-host checksum --write ${name}.toml
"""
import json
import os
import sys
import time

STARTED_AT = time.monotonic()
METHODS = ["initialize", "echo", "health", "shutdown"]


def log(text):
    sys.stderr.write("${name}: " + text + "\\n")
    sys.stderr.flush()


def send(message):
    reply = {"jsonrpc": "2.0"}
    reply.update(message)
    sys.stdout.write(json.dumps(reply, separators=(",", ":")) + "\\n")
    sys.stdout.flush()  # stdout is a pipe, so Python buffers it: flush every reply line


def handle(method, params):
    if method == "initialize":
        return {"ok": True, "supportedMethods": METHODS}
    if method == "echo":
        return params
    if method == "health":
        return {"ok": True, "uptimeMs": int((time.monotonic() - STARTED_AT) * 1000)}
    raise LookupError(method)


def main():
    log("ready")
    while True:
        raw = sys.stdin.readline()
        if not raw:
            return 0  # stdin EOF: the host is done with us
        line = raw.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            log("ignoring a line that is not JSON: " + line[:200])
            continue
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            continue
        if "id" not in message:
            continue  # a notification: nothing to answer
        request_id = message["id"]
        method = message["method"]
        if method == "shutdown":
            send({"id": request_id, "result": None})
            return 0
        try:
            send({"id": request_id, "result": handle(method, message.get("params"))})
        except LookupError:
            send({"id": request_id, "error": {"code": -32601, "message": "Method not found: " + method}})
        except Exception as e:  # a bug in a handler answers this call and keeps the plugin up
            send({"id": request_id, "error": {"code": -32603, "message": "Internal error: %s" % e}})


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        os._exit(0)  # the host closed our stdout: nothing left to say
    except KeyboardInterrupt:
        os._exit(130)
`

/**
 * The starter plugin's source for `language`, naming the plugin `name`.
 *
 * @category templates
 */
export const executable = (language: Language, name: string): string =>
  language === "node" ? node(name) : python(name)

/**
 * The manifest of a new plugin, every key explained; `checksum` is the executable's SHA-256.
 *
 * @category templates
 */
export const manifest = (options: {
  readonly name: string
  readonly executable: string
  readonly checksum: string
}): string =>
  `# The manifest of the \`${options.name}\` plugin, read by effect-plugin-host (\`plugin-host doctor\`,
# \`PluginManifest.discover\`). Unknown keys are rejected. The JSON Schema of this format is
# plugin-manifest.toml.schema.json in the effect-plugin-host package.

# The plugin's name: a lowercase letter, then a-z, 0-9, \`_\`, \`.\` or \`-\`. The file name must be
# \`<name>.toml\` or end with \`-<name>.toml\`.
name = "${options.name}"

# The plugin's version, shown in diagnostics.
version = "0.1.0"

# The program to start, relative to this folder (or absolute). It is run directly, never through
# a shell: it needs its shebang line and the executable bit.
executable = "${options.executable}"

# The SHA-256 of the executable, checked when the plugin is discovered and before every start.
# After editing the executable, update it with: plugin-host checksum --write ${options.name}.toml
# The host runs a private copy of exactly these bytes. Once the plugin imports files next to it,
# list it and them in \`checksums\` instead (verified in place): checksums = { "main.py" = "…" }
checksum_sha256 = "${options.checksum}"

# The host environment variables the plugin may see; every other one is withheld. PATH lets the
# shebang's \`/usr/bin/env\` find the interpreter.
allowed_env_vars = ["PATH"]

# Fixed arguments for the executable (none yet):
# args = ["--verbose"]

# The wire, when it is not the host's default: messages framed as LSP frames them
# ("content-length") instead of one per line ("ndjson"), and what the host sends when it gives up
# a call ("lsp": $/cancelRequest, "mcp": notifications/cancelled, "none"):
# framing = "content-length"
# cancellation = "mcp"
`
