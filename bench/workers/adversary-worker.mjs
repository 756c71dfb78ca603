#!/usr/bin/env node
// The plugin of the adversaries benchmark: raw JSON-RPC over stdio, told how to misbehave.
// Methods: echo (result = params), crash ({code, stderr}: write stderr, exit, no reply), hang
// (never answered), flood ({count, bytes}: `count` notifications `flood` {n, pad} as fast as
// stdout drains, then result {sent}), initialize, shutdown.
// Flags: --no-read (never read stdin), --trap-term (ignore SIGTERM), --ignore-shutdown (answer
// `shutdown` but keep running), --ignore-eof (keep running after stdin ends),
// --flood-requests=N with --flood-bytes=B (at start, send the host N requests `flood` {bytes}).
const argv = process.argv.slice(2)
const flag = (name) => argv.includes(name)
const option = (name, fallback) => {
  const arg = argv.find((a) => a.startsWith(`${name}=`))
  return arg === undefined ? fallback : Number(arg.slice(name.length + 1))
}

const write = (line) => process.stdout.write(line + "\n")
const reply = (id, result) => write(JSON.stringify({ jsonrpc: "2.0", id, result }))

/** Writes `count` lines made by `lineOf(n)` (n from 1) in 64 KiB slices, waiting for drain. */
const writeAll = async (count, lineOf) => {
  let slice = ""
  for (let n = 1; n <= count; n++) {
    slice += lineOf(n)
    if (slice.length >= 65536 || n === count) {
      const chunk = slice
      slice = ""
      if (!process.stdout.write(chunk)) await new Promise((resolve) => process.stdout.once("drain", resolve))
    }
  }
}

const methods = {
  echo: (id, params) => reply(id, params ?? null),
  crash: (_id, params) => {
    if (typeof params?.stderr === "string") process.stderr.write(params.stderr)
    process.exit(params?.code ?? 1)
  },
  hang: () => {},
  flood: async (id, params) => {
    const pad = "x".repeat(params?.bytes ?? 0)
    await writeAll(params?.count ?? 0, (n) => `{"jsonrpc":"2.0","method":"flood","params":{"n":${n},"pad":"${pad}"}}\n`)
    reply(id, { sent: params?.count ?? 0 })
  },
  initialize: (id) => reply(id, { ok: true, supportedMethods: Object.keys(methods) }),
  shutdown: (id) => {
    reply(id, null)
    if (!flag("--ignore-shutdown")) process.stdout.write("", () => process.exit(0))
  }
}

const onLine = (line) => {
  if (line === "") return
  const message = JSON.parse(line)
  if (typeof message.method !== "string" || message.id === undefined || message.id === null) return
  const method = methods[message.method]
  if (method === undefined) {
    write(JSON.stringify({ jsonrpc: "2.0", id: message.id, error: { code: -32601, message: `Method not found: ${message.method}` } }))
  } else {
    method(message.id, message.params)
  }
}

if (flag("--trap-term")) process.on("SIGTERM", () => {})
// A process that reads nothing has nothing else keeping it alive.
if (flag("--no-read") || flag("--ignore-eof")) setInterval(() => {}, 1 << 30)
process.stdout.on("error", () => {}) // the host is gone; its signals decide our end

const floodRequests = option("--flood-requests", 0)
if (floodRequests > 0) {
  const bytes = option("--flood-bytes", 65536)
  void writeAll(floodRequests, (n) => `{"jsonrpc":"2.0","id":"f${n}","method":"flood","params":{"bytes":${bytes}}}\n`)
}

if (!flag("--no-read")) {
  let buffered = ""
  process.stdin.setEncoding("utf8")
  process.stdin.on("data", (chunk) => {
    buffered += chunk
    let nl
    while ((nl = buffered.indexOf("\n")) !== -1) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      onLine(line)
    }
  })
  process.stdin.on("end", () => {
    if (!flag("--ignore-eof")) process.exit(0)
  })
}
