#!/usr/bin/env node
// The raw NATS worker of the remote scenario: `@nats-io/transport-node` alone, subscribed to
// `<prefix>.call` in queue group `q`, answering each JSON-RPC request with its params
// (`JSON.parse`/`JSON.stringify`, as the raw stdio worker does). `ready` on stdout once subscribed.
// env: NATS_URL, BENCH_PREFIX.
import { connect } from "@nats-io/transport-node"

const nc = await connect({ servers: process.env.NATS_URL, name: `bench-raw-${process.pid}` })
const subject = `${process.env.BENCH_PREFIX ?? "bench.raw"}.call`
const sub = nc.subscribe(subject, {
  queue: "q",
  callback: (error, msg) => {
    if (error !== null) return
    const request = JSON.parse(msg.string())
    msg.respond(JSON.stringify({ jsonrpc: "2.0", id: request.id, result: request.params ?? null }))
  }
})
await nc.flush()
process.stdout.write("ready\n")
const stop = () => void sub.drain().then(() => nc.drain()).finally(() => process.exit(0))
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
