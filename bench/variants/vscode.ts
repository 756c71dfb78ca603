/**
 * vscode-jsonrpc over stdio, its own reader and writer on both sides.
 */
import { spawn } from "node:child_process"
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node"
import { node, workerEnv, workers } from "../lib/common.ts"
import type { Driver } from "./driver.ts"
import { waitForExit } from "./raw.ts"

export const open = async (): Promise<Driver> => {
  const child = spawn(node, [workers.vscode], { stdio: ["pipe", "pipe", "inherit"], env: workerEnv() })
  child.stdin.on("error", () => {})
  const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin))
  connection.listen()
  const close = async () => {
    connection.dispose()
    child.stdin.end()
    child.kill("SIGTERM")
    await waitForExit(child)
  }
  try {
    await connection.sendRequest("initialize", {})
  } catch (error) {
    await close()
    throw error
  }
  return {
    pid: child.pid,
    call: (method, params) => connection.sendRequest(method, params),
    close
  }
}
