#!/usr/bin/env node
// The `flaky` example plugin: a plain-JavaScript JSON-RPC 2.0 plugin (no dependencies) that
// crashes on demand, for showing what the host does about crashes: the restart on the next call,
// the restart cap (3 crashes in 60 s by default) that disables the plugin, and `clearDisabled`.
//
// Methods (one JSON object per line on stdin/stdout):
//   echo <any>            → the params, unchanged
//   pid                   → {pid}
//   crash {code?, why?}   → writes `flaky: crashing (<why>)` to stderr and exits with `code`
//                           (default 3) without answering
//   health                → {ok: true, uptimeMs}
//   initialize            → {ok: true, supportedMethods} (the worker dialect's handshake)
//   shutdown              → null, then exit 0
//   other                 → error {code: -32601, message: "Method not found: <name>"}
//
// Crashing on start (both variables must be allow-listed by the manifest):
//   FLAKY_CRASH_ON_START=N  exit 2 right after starting, before reading anything…
//   FLAKY_STATE_FILE=path   …for the first N starts only, counted in this file (one number);
//                           without it, every start crashes while N > 0.
// It exits 0 on stdin EOF.
import * as fs from "node:fs"
import { createInterface } from "node:readline"

const methods = ["echo", "pid", "crash", "health", "shutdown"]
const startedAt = Date.now()

const crashesOnStart = Number.parseInt(process.env.FLAKY_CRASH_ON_START ?? "0", 10) || 0
if (crashesOnStart > 0) {
  const stateFile = process.env.FLAKY_STATE_FILE
  let done = 0
  if (stateFile) {
    try {
      done = Number.parseInt(fs.readFileSync(stateFile, "utf8"), 10) || 0
    } catch {
      done = 0 // no file yet: no crash so far
    }
  }
  if (!stateFile || done < crashesOnStart) {
    if (stateFile) fs.writeFileSync(stateFile, String(done + 1))
    process.stderr.write(`flaky: crashing on start (${done + 1} of ${crashesOnStart})\n`)
    process.exit(2)
  }
}

const send = (message) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n")

const answer = (id, method, params) => {
  switch (method) {
    case "echo":
      return send({ id, result: params ?? null })
    case "pid":
      return send({ id, result: { pid: process.pid } })
    case "crash": {
      const code = Number.isInteger(params?.code) ? params.code : 3
      process.stderr.write(`flaky: crashing (${typeof params?.why === "string" ? params.why : "asked to"})\n`)
      return process.exit(code)
    }
    case "health":
      return send({ id, result: { ok: true, uptimeMs: Date.now() - startedAt } })
    case "initialize":
      return send({ id, result: { ok: true, supportedMethods: methods } })
    case "shutdown":
      send({ id, result: null })
      stopped = true
      return lines.close() // no more requests; `close` exits once stdout is flushed
    default:
      return send({ id, error: { code: -32601, message: `Method not found: ${method}` } })
  }
}

let stopped = false
const lines = createInterface({ input: process.stdin })
lines.on("line", (line) => {
  if (stopped || line.trim() === "") return
  let message
  try {
    message = JSON.parse(line)
  } catch {
    process.stderr.write(`flaky: ignoring a line that is not JSON: ${line.slice(0, 200)}\n`)
    return
  }
  if (typeof message !== "object" || message === null || typeof message.method !== "string") return
  if (!("id" in message)) return // a notification: nothing to answer
  answer(message.id, message.method, message.params)
})
lines.on("close", () => process.stdout.write("", () => process.exit(0)))
