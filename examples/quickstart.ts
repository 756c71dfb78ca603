/**
 * Quickstart: spawn the bundled `echo` plugin, call it, serve a call it makes back into the
 * host, receive its log notifications, and see a crash arrive as a typed error.
 *
 * Run with `npm start`.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import * as RpcPeer from "../src/RpcPeer.ts"

const plugin = path.resolve(import.meta.dirname, "plugins/echo/echo.ts")

const program = Effect.gen(function*() {
  const proc = yield* PluginProcess.make(
    { name: "echo", executable: process.execPath, args: [plugin], allowedEnvVars: ["PATH"] },
    { shutdownGrace: "2 seconds" }
  )
  yield* Effect.log(`spawned echo (pid ${proc.pid})`)
  const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), {
    hostHandlers: {
      "host.sum": (params) =>
        Array.isArray(params) && params.every((n) => typeof n === "number")
          ? Effect.succeed(params.reduce((a, b) => a + b, 0))
          : Effect.fail(JsonRpc.error(JsonRpc.ErrorCode.InvalidParams, "host.sum takes an array of numbers"))
    },
    onNotification: (n) => Effect.log(`notification from echo: ${n.method} ${JSON.stringify(n.params)}`)
  })

  const hello = yield* peer.request("initialize")
  yield* Effect.log(`initialize → ${JSON.stringify(hello)}`)
  yield* Effect.log(`echo → ${JSON.stringify(yield* peer.request("echo", { hello: "world" }))}`)
  yield* Effect.log(`sum (computed by the host) → ${JSON.stringify(yield* peer.request("sum", [1, 2, 3, 4]))}`)
  yield* Effect.log(`greet → ${JSON.stringify(yield* peer.request("greet", "Ada"))}`)
  const unknown = yield* peer.request("nope").pipe(Effect.flip)
  yield* Effect.log(`unknown method → ${unknown.message}`)
  const crash = yield* peer.request("crash").pipe(Effect.flip)
  yield* Effect.log(`crash → ${crash.message} [${crash.reason._tag}]`)
  yield* Effect.log(`exit observed as data: ${JSON.stringify(yield* proc.exit)}`)
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(NodeServices.layer)))
