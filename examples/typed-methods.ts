/**
 * Typed plugin methods and typed errors, on the bundled `secrets` plugin (Python, strictly
 * serial, devboy dialect).
 *
 * A `PluginMethod` names a method and the Schemas of its params and result: `client.call`
 * encodes the params (a bad value fails with `InvalidParams`, nothing is sent) and decodes the
 * result (a wrong shape fails with `UnexpectedPayload`). A plugin's own error object — here
 * devboy's `{kind, detail}`, not `{code, message}` — arrives whole as the `data` of a
 * `PluginError` reason, which `Effect.catchReason` handles without touching the other reasons.
 *
 * Run with `node examples/typed-methods.ts` (Node 24).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as path from "node:path"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import type * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginMethod from "../src/PluginMethod.ts"
import * as PluginProcess from "../src/PluginProcess.ts"

// ---------------------------------------------------------------------------------------------
// the plugin's API, as Schemas
// ---------------------------------------------------------------------------------------------

/** `secret_source.get {key}` → `{value}`. The value is decoded into a `Redacted`, so it never shows up in a log. */
export const GetSecret = PluginMethod.make("secret_source.get", {
  params: Schema.Struct({ key: Schema.NonEmptyString }),
  result: Schema.Struct({ value: Schema.RedactedFromValue(Schema.String) })
})

/** `secret_source.list` → `{keys}`. */
export const ListSecrets = PluginMethod.make("secret_source.list", {
  params: Schema.Struct({}),
  result: Schema.Struct({ keys: Schema.Array(Schema.String) })
})

/** The error objects a devboy secret source answers with. */
export const SourceError = Schema.Struct({
  kind: Schema.Literals(["not-found", "needs-credential", "invalid-params"]),
  detail: Schema.String
})
const decodeSourceError = Schema.decodeUnknownOption(SourceError)

/**
 * A secret, `None` when the source has no such key. Other failures (the plugin needs a
 * credential, crashed, timed out…) stay typed errors.
 */
export const getSecret = (client: PluginClient.PluginClient, key: string) =>
  client.call(GetSecret, { key }).pipe(
    Effect.map(({ value }) => Option.some(value)),
    Effect.catchReason("PluginClientError", "PluginError", (reason, error) => {
      const sourceError = decodeSourceError(reason.data)
      return Option.isSome(sourceError) && sourceError.value.kind === "not-found"
        ? Effect.succeedNone
        : Effect.fail(error)
    })
  )

// ---------------------------------------------------------------------------------------------
// the program
// ---------------------------------------------------------------------------------------------

const manifestPath = path.resolve(import.meta.dirname, "plugins/secrets/devboy-source-secrets.toml")
const hostEnv = { ...process.env, PATH: [path.dirname(process.execPath), process.env.PATH].join(path.delimiter) }

/** How a failed call reads in this program: the reason's tag, then the message. */
const describe = (error: PluginClientError.PluginClientError) => `${error.reason._tag}: ${error.message.replace(/\s+/g, " ")}`

const program = Effect.gen(function*() {
  const manifest = yield* PluginManifest.load(manifestPath)
  const client = yield* PluginClient.make(manifest, {
    hostEnv,
    // Strictly serial: the plugin reads one request, answers it, then reads the next.
    policy: LifetimePolicy.makeUnsafe({ maxConcurrentRequests: 1, shutdownGrace: "2 seconds" }),
    handshake: Handshake.secretSource({ vault: "example" }),
    shutdownRequest: "shutdown"
  })

  const { keys } = yield* client.call(ListSecrets, {})
  yield* Console.log(`keys: ${keys.join(", ")}`)

  // Calls made at once still reach the plugin one at a time.
  const values = yield* Effect.forEach(["db_password", "api_token"], (key) => getSecret(client, key), {
    concurrency: "unbounded"
  })
  for (const value of values) {
    yield* Console.log(`got ${Option.match(value, {
      onNone: () => "nothing",
      onSome: (secret) => `${String(secret)} (${Redacted.value(secret).length} characters, redacted when printed)`
    })}`)
  }

  // `not-found` is data: None.
  const missing = yield* getSecret(client, "no_such_key")
  yield* Console.log(`no_such_key → ${Option.isNone(missing) ? "None (not-found handled)" : "found?!"}`)

  // `needs-credential` is still a PluginError; handle it where it makes sense, keeping its data.
  const locked = yield* getSecret(client, "locked").pipe(
    Effect.as("unlocked?!"),
    Effect.catchReason("PluginClientError", "PluginError", (reason) =>
      Effect.succeed(`${reason.message} — data ${JSON.stringify(reason.data)}`))
  )
  yield* Console.log(`locked → ${locked}`)

  // Params failing their Schema are never sent.
  const empty = yield* client.call(GetSecret, { key: "" }).pipe(
    Effect.as("sent?!"),
    Effect.catchReason("PluginClientError", "InvalidParams", (_, error) => Effect.succeed(describe(error)))
  )
  yield* Console.log(`empty key → ${empty}`)

  // A result of the wrong shape is an UnexpectedPayload at the boundary, not an `undefined` later.
  const WrongShape = PluginMethod.make("secret_source.list", {
    params: Schema.Struct({}),
    result: Schema.Struct({ keys: Schema.Array(Schema.Number) })
  })
  const wrong = yield* client.call(WrongShape, {}).pipe(
    Effect.as("decoded?!"),
    Effect.catchReasons("PluginClientError", {
      UnexpectedPayload: (reason) => Effect.succeed(`UnexpectedPayload for ${reason.method}`),
      PluginError: (reason) => Effect.succeed(`PluginError ${reason.message}`)
    })
  )
  yield* Console.log(`list decoded with the wrong Schema → ${wrong}`)

  const health = yield* client.health
  yield* Console.log(`plugin errors are not crashes: state ${health.state._tag}, crashes ${health.totalCrashes}, spawns ${health.spawns}`)
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(Layer.merge(NodeServices.layer, PluginProcess.layerNode))))
