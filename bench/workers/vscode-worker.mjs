#!/usr/bin/env node
// The worker written with vscode-jsonrpc over stdio (its own Content-Length framing).
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node"

const payloads = new Map()
const payloadOf = (bytes) => {
  let text = payloads.get(bytes)
  if (text === undefined) {
    text = "x".repeat(bytes)
    payloads.set(bytes, text)
  }
  return text
}

const connection = createMessageConnection(new StreamMessageReader(process.stdin), new StreamMessageWriter(process.stdout))
connection.onRequest("echo", (params) => params ?? null)
connection.onRequest("payload", (params) => payloadOf(params.bytes))
connection.onRequest("initialize", () => ({ ok: true, supportedMethods: ["echo", "payload"] }))
connection.onClose(() => process.exit(0))
process.stdin.on("end", () => process.exit(0))
connection.listen()
