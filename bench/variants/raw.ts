/**
 * The raw baseline host: `node:child_process` + `node:readline` + `JSON.parse/stringify` + a Map
 * of pending ids. The physical limit of a Node host; everything else is a ratio to it.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { createInterface } from "node:readline"
import { node, workerEnv, workers } from "../lib/common.ts"
import type { Driver } from "./driver.ts"

interface Pending {
  readonly resolve: (value: unknown) => void
  readonly reject: (error: Error) => void
}

/** Waits for a child to exit, SIGKILLing it after `graceMs`. */
export const waitForExit = (child: ChildProcess, graceMs = 2_000): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve()
    })
  })

/** A raw client over an already spawned child (stdin/stdout piped). */
export const attach = (child: ChildProcess): Driver => {
  const pending = new Map<number, Pending>()
  let nextId = 1
  let exited = false
  child.once("exit", (code, signal) => {
    exited = true
    const error = new Error(`worker exited (code ${code}, signal ${signal})`)
    for (const entry of pending.values()) entry.reject(error)
    pending.clear()
  })
  child.stdin!.on("error", () => {}) // EPIPE after the worker died: the exit handler reports it
  createInterface({ input: child.stdout!, crlfDelay: Infinity }).on("line", (line) => {
    const message = JSON.parse(line)
    const entry = pending.get(message.id)
    if (entry === undefined) return
    pending.delete(message.id)
    if (message.error !== undefined) entry.reject(new Error(message.error.message))
    else entry.resolve(message.result)
  })
  return {
    pid: child.pid,
    call: (method, params) =>
      new Promise((resolve, reject) => {
        if (exited) return reject(new Error("worker exited"))
        const id = nextId++
        pending.set(id, { resolve, reject })
        child.stdin!.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n")
      }),
    close: async () => {
      child.stdin!.end()
      child.kill("SIGTERM")
      await waitForExit(child)
    }
  }
}

export interface OpenOptions {
  /**
   * Start the worker as our node launcher starts a plugin: in a session and process group of its
   * own, stderr piped (and forwarded). Where the kernel groups tasks by session for scheduling
   * (`sched_autogroup`), a session of its own gives each worker a CPU share of its own, which
   * weighs on start-up times of many plugins on a loaded machine (see `scenarios/scale1000.ts`).
   */
  readonly detached?: boolean
}

/** Spawns a worker (the raw worker unless told otherwise) and waits for its `initialize` reply. */
export const open = async (worker: string = workers.raw, options?: OpenOptions): Promise<Driver> => {
  const detached = options?.detached === true
  const child = spawn(node, [worker], { stdio: ["pipe", "pipe", detached ? "pipe" : "inherit"], detached, env: workerEnv() })
  child.stderr?.pipe(process.stderr, { end: false })
  const driver = attach(child)
  try {
    await driver.call("initialize", {})
  } catch (error) {
    await driver.close()
    throw error
  }
  return driver
}
