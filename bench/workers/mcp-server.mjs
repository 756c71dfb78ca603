#!/usr/bin/env node
// A minimal MCP server (the official SDK, stdio transport) with an `echo` tool that returns its
// arguments, and a `payload` tool that returns a text of `bytes` bytes.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
import * as z from "zod"

const payloads = new Map()
const payloadOf = (bytes) => {
  let text = payloads.get(bytes)
  if (text === undefined) {
    text = "x".repeat(bytes)
    payloads.set(bytes, text)
  }
  return text
}

const server = new McpServer({ name: "bench", version: "1.0.0" })
server.registerTool(
  "echo",
  { description: "Returns its arguments", inputSchema: { n: z.number(), text: z.string() } },
  async (args) => ({ content: [{ type: "text", text: JSON.stringify(args) }] })
)
server.registerTool(
  "payload",
  { description: "Returns a text of `bytes` bytes", inputSchema: { bytes: z.number() } },
  async ({ bytes }) => ({ content: [{ type: "text", text: payloadOf(bytes) }] })
)
process.stdin.on("end", () => process.exit(0))
await server.connect(new StdioServerTransport())
