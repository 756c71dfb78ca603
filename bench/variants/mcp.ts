/**
 * The MCP SDK: `Client` + `StdioClientTransport` against a minimal server with an `echo` tool
 * (`tools/call`). `call(method, params)` calls the tool named `method` and resolves with its
 * first text content.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { node, workerEnv, workers } from "../lib/common.ts"
import type { Driver } from "./driver.ts"

export const open = async (): Promise<Driver> => {
  const transport = new StdioClientTransport({ command: node, args: [workers.mcp], env: workerEnv(), stderr: "inherit" })
  const client = new Client({ name: "bench", version: "1.0.0" })
  // The transport ends stdin, waits, then escalates to SIGTERM and SIGKILL itself.
  const close = () => client.close().catch(() => {})
  try {
    await client.connect(transport)
  } catch (error) {
    await close()
    throw error
  }
  return {
    pid: transport.pid ?? undefined,
    call: async (method, params) => {
      const result = await client.callTool({ name: method, arguments: params as Record<string, unknown> })
      const content = result.content as Array<{ type: string; text?: string }>
      return content[0]?.text
    },
    close
  }
}
