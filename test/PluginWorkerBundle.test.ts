/**
 * A worker bundled into one file (its code, the SDK and `effect`, as the README's recipe makes
 * it with rolldown) is hosted like any other: the handshake, calls, a typed failure, a call back
 * into the host and a log all work, and nothing is loaded from outside the bundle (it runs from
 * a temporary folder with no `node_modules` above it). The NATS half of the SDK, loaded on demand, does not break
 * the bundle.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import { build } from "rolldown"
import * as Handshake from "../src/Handshake.ts"
import * as PluginClient from "../src/PluginClient.ts"
import { fixture, liveWith, node, launchers } from "./support/processes.ts"

const bundle = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bundled-worker-"))
    const file = path.join(dir, "worker.mjs")
    await build({
      input: fixture("echo-worker.ts"),
      platform: "node",
      logLevel: "silent",
      output: { file, format: "esm", minify: true, codeSplitting: false }
    })
    return { dir, file }
  }),
  ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("a worker bundled into one file", () => {
  it.live("is one file that needs no node_modules, and serves like the unbundled worker", () =>
    Effect.gen(function*() {
      const { dir, file } = yield* bundle
      assert.deepStrictEqual(fs.readdirSync(dir), ["worker.mjs"], "a single file")
      // Nothing to resolve a package from, from the bundle's folder up: all it runs is inside it.
      const ancestors = dir.split(path.sep).map((_, i, parts) => parts.slice(0, i + 1).join(path.sep) || path.sep)
      assert.deepStrictEqual(ancestors.filter((folder) => fs.existsSync(path.join(folder, "node_modules"))), [])
      for (const launcher of launchers) {
        yield* Effect.gen(function*() {
          const client = yield* PluginClient.make({ name: "bundled", executable: node, args: [file] }, {
            cwd: dir,
            handshake: Handshake.initialize(),
            hostHandlers: { "host.add": (params) => Effect.succeed(Array.isArray(params) ? params.reduce((a: number, b: number) => a + b, 0) : 0) }
          })
          assert.deepStrictEqual(yield* client.request("echo", { deep: [1, "é"] }), { deep: [1, "é"] })
          assert.strictEqual(yield* client.request("askHost", [2, 3]), 5)
          assert.strictEqual(yield* client.request("logSomething"), "logged")
          const failure = yield* client.request("forbidden").pipe(Effect.flip)
          assert.include(failure.message, "not allowed: secrets")
        }).pipe(Effect.scoped, Effect.provide(liveWith(launcher)))
      }
    }).pipe(Effect.scoped), 60_000)
})
