import * as Effect from "effect/Effect"
import { PluginProcess, RpcPeer, PluginClient, PluginManager } from "../src/index.ts"
import { clientOptions, runWith, source } from "./variants/effect.ts"
import { node, workers, workerEnv } from "./lib/common.ts"
const gc = () => { (globalThis as any).gc(); (globalThis as any).gc() }
const mem = () => { gc(); const m = process.memoryUsage(); return { rss: m.rss / 1024, heap: m.heapUsed / 1024 } }
const diff = (a: any, b: any, n: number) => Object.fromEntries(Object.keys(a).map((k) => [k, Math.round((b[k] - a[k]) / n * 10) / 10]))
const N = 100
const mode = process.argv[2]
const one = (i: number): Effect.Effect<unknown, unknown, any> => {
  switch (mode) {
    case "process": return PluginProcess.make({ name: `p${i}`, executable: node, args: [workers.raw], env: workerEnv() })
    case "peer": return Effect.flatMap(PluginProcess.make({ name: `p${i}`, executable: node, args: [workers.raw], env: workerEnv() }), (p) => Effect.tap(RpcPeer.make(RpcPeer.fromProcess(p)), (peer) => peer.request("initialize", {})))
    case "client": return Effect.flatMap(PluginClient.make(source("effect-host", `p${i}`), clientOptions), (c) => c.start)
    default: return Effect.flatMap(PluginManager.PluginManager, (m) => Effect.andThen(m.register(`p${i}`, source("effect-host", `p${i}`), clientOptions), m.start(`p${i}`)))
  }
}
await runWith(PluginManager.layer, "effect-host")(Effect.gen(function*() {
  yield* Effect.forEach([1001, 1002, 1003, 1004], one, { concurrency: "unbounded" }).pipe(Effect.scoped)
  const before = mem()
  yield* Effect.forEach(Array.from({ length: N }, (_, i) => i), one, { concurrency: "unbounded" })
  yield* Effect.sleep(200)
  console.log(mode, "per plugin KB", diff(before, mem(), N))
}) as any)
