#!/usr/bin/env node
// The raw baseline worker: node:readline + JSON.parse/stringify, one write per reply.
// Methods: echo (result = params), payload ({bytes} → a string of that many bytes),
// initialize ({ok, supportedMethods}), shutdown (null, then exit). Exits on stdin EOF (and,
// like any Node program, on SIGTERM).
import { createInterface } from "node:readline"

const payloads = new Map()
const payloadOf = (bytes) => {
  let text = payloads.get(bytes)
  if (text === undefined) {
    text = "x".repeat(bytes)
    payloads.set(bytes, text)
  }
  return text
}

const reply = (message) => process.stdout.write(JSON.stringify(message) + "\n")

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on("line", (line) => {
  const message = JSON.parse(line)
  if (message.id === undefined || message.id === null) return // a notification
  const id = message.id
  switch (message.method) {
    case "echo":
      return reply({ jsonrpc: "2.0", id, result: message.params ?? null })
    case "payload":
      return reply({ jsonrpc: "2.0", id, result: payloadOf(message.params.bytes) })
    case "initialize":
      return reply({ jsonrpc: "2.0", id, result: { ok: true, supportedMethods: ["echo", "payload"] } })
    case "shutdown":
      reply({ jsonrpc: "2.0", id, result: null })
      return process.exit(0)
    default:
      return reply({ jsonrpc: "2.0", id, error: { code: -32601, message: `Method not found: ${message.method}` } })
  }
})
