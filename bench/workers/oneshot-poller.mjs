#!/usr/bin/env node
// A one-shot (ephemeral) poller: reads ONE `poll_tick` request line, writes ONE reply line, exits.
import { createInterface } from "node:readline"

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.once("line", (line) => {
  lines.close()
  const request = JSON.parse(line)
  process.stdout.write(JSON.stringify({
    jsonrpc: "2.0",
    id: request.id,
    result: { next_cursor: null, next_interval_secs: 30, metrics: { items_seen: 1, items_dispatched: 1 } }
  }) + "\n")
})
