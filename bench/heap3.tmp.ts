import * as Effect from "effect/Effect"
import v8 from "node:v8"
import { PluginClient } from "../src/index.ts"
import { clientOptions, run, source } from "./variants/effect.ts"
const gc = () => { (globalThis as any).gc(); (globalThis as any).gc() }
const N = 50
await run("effect-host")(Effect.gen(function*() {
  yield* Effect.forEach([1001, 1002, 1003], (i) => Effect.flatMap(PluginClient.make(source("effect-host", `p${i}`), clientOptions), (c) => c.start), { concurrency: "unbounded" }).pipe(Effect.scoped)
  gc(); v8.writeHeapSnapshot("/tmp/prof/b.heapsnapshot")
  yield* Effect.forEach(Array.from({ length: N }, (_, i) => i), (i) => Effect.flatMap(PluginClient.make(source("effect-host", `p${i}`), clientOptions), (c) => c.start), { concurrency: "unbounded" })
  yield* Effect.sleep(200)
  gc(); v8.writeHeapSnapshot("/tmp/prof/a.heapsnapshot")
}) as any)
