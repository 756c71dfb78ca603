/**
 * The broker half of the worker SDK is loaded on demand: `PluginWorker.serveBroker` and
 * `runBroker` load `PluginWorkerBroker` the first time they run and behave as before (they serve,
 * and fail with the very `PluginWorker.InvalidService` class users match on), while a process
 * that only imports `PluginWorker` loads no broker code and none of the `effect` modules a stdio
 * worker does without.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import * as Effect from "effect/Effect"
import * as Broker from "../src/Broker.ts"
import * as PluginWorker from "../src/PluginWorker.ts"
import { node } from "./support/processes.ts"

const prefix = "plugins.lazy"

describe("the broker half of PluginWorker, loaded on demand", () => {
  it.effect("serveBroker serves calls through the lazy wrapper", () =>
    Effect.gen(function*() {
      const served = yield* PluginWorker.serveBroker({
        prefix,
        service: "lazy",
        handlers: { add: (params) => Effect.succeed(Array.isArray(params) ? params.reduce((a: number, b: number) => a + b, 0) : 0) }
      })
      assert.strictEqual(served.name, "lazy")
      const reply = yield* Broker.requestJson(`${prefix}.call`, { jsonrpc: "2.0", id: 1, method: "add", params: [2, 3] }, "1 second")
      assert.deepStrictEqual(reply, { jsonrpc: "2.0", id: 1, result: 5 })
    }).pipe(Effect.scoped, Effect.provide(Broker.layerMemory)))

  it.effect("runBroker fails with PluginWorker.InvalidService, the class the lazy half throws", () =>
    Effect.gen(function*() {
      const error = yield* PluginWorker.runBroker({ prefix, handlers: {}, version: "not-semver" }, Broker.layerMemory).pipe(Effect.flip)
      assert.instanceOf(error, PluginWorker.InvalidService)
      assert.strictEqual(error.field, "version")
    }))

  it("importing PluginWorker loads no broker code, no Stream, Logger or FileSystem", () => {
    // A fresh process records every module it loads (a `module.registerHooks` load hook).
    const script = `
      import { registerHooks } from "node:module"
      const loaded = []
      registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context) } })
      await import(${JSON.stringify(pathToFileURL(path.join(import.meta.dirname, "..", "src", "PluginWorker.ts")).href)})
      process.stdout.write(JSON.stringify(loaded))
    `
    const loaded: Array<string> = JSON.parse(
      execFileSync(node, ["--input-type=module", "--no-warnings", "-e", script], { encoding: "utf8", timeout: 60_000 })
    )
    const names = loaded.map((url) => url.replace(/^.*\/(src|effect\/dist)\//, "$1/"))
    assert.include(names, "src/internal/rpcConnection.ts", "the scan sees the worker's modules")
    const unwanted = names.filter((name) =>
      /^src\/(Broker|Poller|PluginWorkerBroker|NatsBroker|RpcPeer)\.ts$|^src\/internal\/(brokerService|natsMicro)\.ts$/.test(name) ||
      /^effect\/dist\/(Stream|Logger|FileSystem|Channel|Sink)\.js$/.test(name)
    )
    assert.deepStrictEqual(unwanted, [])
  })
})
