/**
 * A tiny "user host" — an app service that reads secrets from a secret-source plugin and retries
 * while the plugin is down — written so it can be tested with `TestClock` and no real process.
 *
 * The service only asks for a `ChildProcessSpawner`. In production that is `NodeServices.layer`
 * (real processes); in tests it is `InMemorySpawner.layer` from `effect-plugin-host/testing`,
 * whose scripted plugins run on the Effect clock, so retries, backoffs and idle timeouts are
 * driven by `TestClock.adjust` in microseconds. The spec is in `test/examples.test.ts`
 * ("testing your own host").
 *
 * Run it against the real `secrets` plugin with `node examples/testing-your-host.ts` (Node 24).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import type * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginMethod from "../src/PluginMethod.ts"

// ---------------------------------------------------------------------------------------------
// the user's host
// ---------------------------------------------------------------------------------------------

/** Reading a secret failed for good (after the retries, or for a reason retrying cannot fix). */
export class SecretStoreError extends Schema.TaggedError<SecretStoreError>()("SecretStoreError", {
  key: Schema.String,
  reason: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `cannot read secret \`${this.key}\` (${this.reason}): ${this.detail}`
  }
}

/** The app's view of secrets. */
export class SecretStore extends Context.Service<SecretStore, {
  /** The secret, or `None` when the source has no such key. */
  readonly get: (key: string) => Effect.Effect<Option.Option<Redacted.Redacted<string>>, SecretStoreError>
}>()("examples/SecretStore") {}

const GetSecret = PluginMethod.make("secret_source.get", {
  params: Schema.Struct({ key: Schema.String }),
  result: Schema.Struct({ value: Schema.RedactedFromValue(Schema.String) })
})

const isNotFound = Schema.is(Schema.Struct({ kind: Schema.Literal("not-found") }))

/**
 * Failures worth another try: the plugin died, could not start, or was too slow. Not retried:
 * its own error objects, a bad answer, and `RestartCapExceeded` / `Disabled` (the plugin is in a
 * crash loop; hammering it will not help).
 */
export const isRetryable = (error: PluginClientError.PluginClientError): boolean => {
  switch (error.reason._tag) {
    case "Exited":
    case "Io":
    case "Spawn":
    case "InitFailed":
    case "Timeout":
    case "Unavailable":
      return true
    default:
      return false
  }
}

/** Retries wait 1 s, then 2 s, then 4 s. */
export const retrySchedule = Schedule.exponential("1 second")
export const maxRetries = 3

/** The policy of the secret source: strictly serial, 5 s per call, reaped after 60 s idle. */
export const policy = LifetimePolicy.makeUnsafe({
  maxConcurrentRequests: 1,
  requestTimeout: "5 seconds",
  idleTimeout: "60 seconds",
  shutdownGrace: "2 seconds"
})

/**
 * Builds the store over one secret-source plugin (a manifest, or any `{name, executable}`).
 * `options` go to the plugin client (`hostEnv`, `policy`…).
 */
export const make = (source: PluginClient.PluginSource, options?: PluginClient.Options) =>
  Effect.gen(function*() {
    const client = yield* PluginClient.make(source, {
      policy,
      handshake: Handshake.secretSource(),
      shutdownRequest: "shutdown",
      ...options
    })
    const get = (key: string) =>
      client.call(GetSecret, { key }).pipe(
        Effect.map(({ value }) => Option.some(value)),
        Effect.catchReason("PluginClientError", "PluginError", (reason, error) =>
          isNotFound(reason.data) ? Effect.succeedNone : Effect.fail(error)),
        Effect.retry({ while: isRetryable, schedule: retrySchedule, times: maxRetries }),
        Effect.mapError((error) => new SecretStoreError({ key, reason: error.reason._tag, detail: error.message })),
        Effect.withSpan("SecretStore.get", { attributes: { key } })
      )
    return SecretStore.of({ get })
  })

/** The store as a layer: needs a `ChildProcessSpawner` (and, for a manifest with a checksum, `FileSystem` and `Path`). */
export const layer = (source: PluginClient.PluginSource, options?: PluginClient.Options) =>
  Layer.effect(SecretStore, make(source, options))

// ---------------------------------------------------------------------------------------------
// run against the real plugin (only when this file is the program, not when a test imports it)
// ---------------------------------------------------------------------------------------------

const main = Effect.gen(function*() {
  const manifestPath = path.resolve(import.meta.dirname, "plugins/secrets/devboy-source-secrets.toml")
  const manifest = yield* PluginManifest.load(manifestPath)
  const hostEnv = { ...process.env, PATH: [path.dirname(process.execPath), process.env.PATH].join(path.delimiter) }
  const program = Effect.gen(function*() {
    const store = yield* SecretStore
    for (const key of ["db_password", "no_such_key"]) {
      const secret = yield* store.get(key)
      yield* Console.log(`${key}: ${Option.isSome(secret) ? `found (${String(secret.value)})` : "not found"}`)
    }
    const locked = yield* store.get("locked").pipe(Effect.flip)
    yield* Console.log(`locked: ${locked.message}`)
  })
  yield* program.pipe(Effect.provide(layer(manifest, { hostEnv })))
})

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  NodeRuntime.runMain(main.pipe(Effect.provide(NodeServices.layer)))
}
