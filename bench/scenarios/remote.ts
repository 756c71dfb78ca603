/**
 * remote: calls over NATS to one worker instance, through a private `nats-server` on a free
 * loopback port started for the measurement. `raw`: `@nats-io/transport-node` request/reply
 * (a JSON-RPC request out, the worker's JSON-RPC reply parsed back) against a raw subscriber
 * ([workers/nats-raw-worker.mjs](../workers/nats-raw-worker.mjs)); `effect`: a `RemotePlugin`
 * client over `NatsBroker` against `PluginWorker.mainBroker`
 * ([workers/nats-plugin-worker.ts](../workers/nats-plugin-worker.ts)); `effect-host`: our client
 * against the raw worker (the host's cost alone, as in the stdio scenarios). Sequential round
 * trips (p50, p99 in µs) and 64 in flight (calls/s), each with the host's CPU per call.
 */
import { spawn, type ChildProcess } from "node:child_process"
import * as net from "node:net"
import * as fs from "node:fs"
import * as path from "node:path"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { check, echoParams, node, now, quantile, round, sleep, workerEnv, workersDir } from "../lib/common.ts"
import * as NatsBroker from "../../src/NatsBroker.ts"
import * as LifetimePolicy from "../../src/LifetimePolicy.ts"
import type * as PluginClient from "../../src/PluginClient.ts"
import * as RemotePlugin from "../../src/RemotePlugin.ts"

export const counts = (quick: boolean) =>
  quick ? { warmup: 1_000, sequential: 3_000, parallel: 30_000 } : { warmup: 2_000, sequential: 10_000, parallel: 100_000 }

export const inFlight = 64

const serverBinary = ["/usr/sbin/nats-server", ...(process.env.PATH ?? "").split(":").map((dir) => path.join(dir, "nats-server"))]
  .find((file) => fs.existsSync(file))

/** Whether this machine can run the scenario (`nats-server` installed). */
export const available = serverBinary !== undefined

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

/** Waits until `child` prints `marker` on stdout or stderr (or fails after `ms`). */
const waitFor = (child: ChildProcess, marker: string, ms = 30_000) =>
  new Promise<void>((resolve, reject) => {
    let seen = ""
    const timer = setTimeout(() => reject(new Error(`no "${marker}" within ${ms} ms: ${seen.slice(-500)}`)), ms)
    const onData = (chunk: Buffer) => {
      seen += chunk.toString()
      if (seen.includes(marker)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", onData)
    child.once("exit", (code) => reject(new Error(`exited ${code} before "${marker}": ${seen.slice(-500)}`)))
  })

const stop = async (child: ChildProcess) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  child.kill("SIGTERM")
  await Promise.race([exited, sleep(3_000).then(() => void child.kill("SIGKILL"))])
}

/** A private server and one worker for the variant, for the length of `body`. */
const withWorld = async <A>(variant: string, body: (url: string, prefix: string) => Promise<A>): Promise<A> => {
  if (serverBinary === undefined) throw new Error("nats-server is not installed")
  const port = await freePort()
  const url = `127.0.0.1:${port}`
  const server = spawn(serverBinary, ["-a", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...workerEnv() } })
  const prefix = `bench.${variant}`
  let worker: ChildProcess | undefined
  try {
    await waitFor(server, "Server is ready")
    const rawWorker = variant !== "effect"
    const file = rawWorker ? "nats-raw-worker.mjs" : "nats-plugin-worker.ts"
    worker = spawn(node, [path.join(workersDir, file)], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...workerEnv(), NATS_URL: url, BENCH_PREFIX: prefix }
    })
    await waitFor(worker, rawWorker ? "ready" : "serving")
    return await body(url, prefix)
  } finally {
    if (worker !== undefined) await stop(worker)
    await stop(server)
  }
}

/** How the raw variant makes a call: a function from params to the echoed result. */
type Call = (params: unknown) => Promise<unknown>

const isEcho = (result: unknown, n: number) => typeof result === "object" && result !== null && (result as { n?: unknown }).n === n

interface Timings {
  readonly samples: Float64Array
  readonly sequentialCpu: NodeJS.CpuUsage
  readonly parallelCpu: NodeJS.CpuUsage
  readonly parallelMs: number
}

const summarize = (quick: boolean, t: Timings) => {
  const { parallel, sequential } = counts(quick)
  return {
    calls: sequential,
    p50Us: round(quantile(t.samples, 0.5) * 1000),
    p99Us: round(quantile(t.samples, 0.99) * 1000),
    hostCpuUsPerCall: round((t.sequentialCpu.user + t.sequentialCpu.system) / sequential),
    inFlight,
    parallelCalls: parallel,
    callsPerSec: Math.round(parallel / (t.parallelMs / 1000)),
    parallelHostCpuUsPerCall: round((t.parallelCpu.user + t.parallelCpu.system) / parallel, 2)
  }
}

/** The raw variant's measurement, with Promises. */
const measure = async (call: Call, quick: boolean) => {
  const { warmup, sequential, parallel } = counts(quick)
  check(isEcho(await call(echoParams(-1)), -1), "echo")
  for (let i = 0; i < warmup; i++) await call(echoParams(i))
  const samples = new Float64Array(sequential)
  let cpuStart = process.cpuUsage()
  for (let i = 0; i < sequential; i++) {
    const start = now()
    await call(echoParams(i))
    samples[i] = now() - start
  }
  const sequentialCpu = process.cpuUsage(cpuStart)
  let issued = 0
  const lane = async () => {
    while (issued < parallel) await call(echoParams(issued++))
  }
  const start = now()
  cpuStart = process.cpuUsage()
  await Promise.all(Array.from({ length: inFlight }, lane))
  return summarize(quick, { samples, sequentialCpu, parallelCpu: process.cpuUsage(cpuStart), parallelMs: now() - start })
}

/** The same measurement in Effect, for our client (as the stdio scenarios measure it). */
const measureEffect = (client: PluginClient.PluginClient, quick: boolean) =>
  Effect.gen(function*() {
    const { warmup, sequential, parallel } = counts(quick)
    check(isEcho(yield* client.request("echo", echoParams(-1)), -1), "echo")
    for (let i = 0; i < warmup; i++) yield* client.request("echo", echoParams(i))
    const samples = new Float64Array(sequential)
    let cpuStart = process.cpuUsage()
    for (let i = 0; i < sequential; i++) {
      const start = now()
      yield* client.request("echo", echoParams(i))
      samples[i] = now() - start
    }
    const sequentialCpu = process.cpuUsage(cpuStart)
    let issued = 0
    const lane = Effect.gen(function*() {
      while (issued < parallel) yield* client.request("echo", echoParams(issued++))
    })
    const start = now()
    cpuStart = process.cpuUsage()
    yield* Effect.all(Array.from({ length: inFlight }, () => lane), { concurrency: "unbounded", discard: true })
    return summarize(quick, { samples, sequentialCpu, parallelCpu: process.cpuUsage(cpuStart), parallelMs: now() - start })
  })

const rawRun = async (url: string, prefix: string, quick: boolean) => {
  const nc: NatsConnection = await connect({ servers: url, name: "bench-raw-host" })
  const subject = `${prefix}.call`
  let id = 0
  try {
    return await measure(async (params) => {
      const reply = await nc.request(subject, JSON.stringify({ jsonrpc: "2.0", id: ++id, method: "echo", params }), { timeout: 30_000 })
      return (JSON.parse(reply.string()) as { result: unknown }).result
    }, quick)
  } finally {
    await nc.close()
  }
}

const effectRun = (url: string, prefix: string, quick: boolean) =>
  Effect.runPromise(Effect.gen(function*() {
    const client = yield* RemotePlugin.make("bench", {
      subjectPrefix: prefix,
      service: "bench",
      policy: LifetimePolicy.makeUnsafe({ requestTimeout: "30 seconds" })
    })
    return yield* measureEffect(client, quick)
  }).pipe(Effect.scoped, Effect.provide(Layer.fresh(NatsBroker.layer({ servers: url, name: "bench-effect-host" })))))

export const run = (variant: string, quick: boolean): Promise<object> =>
  withWorld(variant, (url, prefix) => variant === "raw" ? rawRun(url, prefix, quick) : effectRun(url, prefix, quick))
