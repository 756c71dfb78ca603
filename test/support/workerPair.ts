/**
 * A host connection and a worker served over an in-memory pipe, for specs of the worker SDK
 * against the host's own connection under `TestClock`.
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as PluginWorker from "../../src/PluginWorker.ts"
import * as RpcPeer from "../../src/RpcPeer.ts"

/**
 * A host connection and a worker served over an in-memory pipe, in the test's context (its
 * TestClock drives both). `workerLines` are the lines the worker wrote, parsed.
 */
export const connected = (
  worker: Omit<PluginWorker.ServeOptions, "name">,
  host?: RpcPeer.Options
) =>
  Effect.gen(function*() {
    const toWorker = yield* Queue.unbounded<Uint8Array>()
    const toHost = yield* Queue.unbounded<Uint8Array>()
    const encoder = new TextEncoder()
    const workerLines: Array<{ readonly method?: string; readonly id?: unknown; readonly params?: unknown; readonly error?: unknown }> = []
    const side = (name: string, incoming: Queue.Queue<Uint8Array>, outgoing: Queue.Queue<Uint8Array>, onLine?: (line: string) => void): RpcPeer.Transport => ({
      name,
      incoming: Stream.fromQueue(incoming),
      writeLine: (line) => {
        onLine?.(line)
        Queue.offerUnsafe(outgoing, encoder.encode(line + "\n"))
        return true
      },
      closed: Effect.never
    })
    yield* PluginWorker.serveTransport(side("worker", toWorker, toHost, (line) => void workerLines.push(JSON.parse(line))), {
      name: "worker",
      ...worker
    }).pipe(Effect.forkScoped)
    const peer = yield* RpcPeer.make(side("host", toHost, toWorker), host)
    return { peer, workerLines }
  })

