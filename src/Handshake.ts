/**
 * The first exchange after a plugin is spawned, before any call is let through.
 *
 * A handshake is a request (`method`, `params`) whose result is checked by `validate`, bounded
 * by the policy's `initTimeout`; once it passes, an optional `afterwards` notification is sent
 * (e.g. `initialized`). A failed, refused or timed-out handshake is `InitFailed` with the
 * plugin's stderr excerpt: the process is killed and the failure counts as a crash. Presets
 * cover the dialects this host unifies, with the params those systems send, so a plugin
 * written to their guides accepts the handshake unchanged:
 *
 * - devboy secret sources ({@link secretSource}): `secret_source.init` with
 *   `{source_name, config, protocol_version: "1.0"}`;
 * - Paperclip workers ({@link paperclip}): `initialize` with
 *   `{manifest, config, instanceInfo: {instanceId, hostVersion}, apiVersion}`, answered by
 *   `{ok, supportedMethods}`; Paperclip logs its workers' stderr at warn, and so does a client
 *   with this handshake (unless told otherwise);
 * - the worker SDK's own `initialize` ({@link initialize}), whose params are the caller's.
 *
 * Params that depend on the plugin (its name, its manifest) are filled in by the client that
 * runs the handshake ({@link forPlugin}).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as HostVersion from "./internal/hostVersion.ts"
import * as Protocol from "./internal/protocol.ts"

/**
 * What a successful handshake tells the host.
 *
 * @category models
 */
export interface HandshakeInfo {
  readonly supportedMethods?: ReadonlyArray<string> | undefined
}

/**
 * What a handshake may take from the plugin it greets: the source it runs.
 *
 * @category models
 */
export interface PluginIdentity {
  readonly name: string
  readonly executable: string
  readonly version?: string | undefined
}

/**
 * A log level for the plugin's stderr lines (`None`: not logged, still kept in the excerpt).
 *
 * @category models
 */
export type StderrLogLevel = "Trace" | "Debug" | "Info" | "Warn" | "Error" | "None"

/**
 * A handshake: none, or a request with a result check.
 *
 * @category models
 */
export type Handshake =
  | { readonly _tag: "None" }
  | {
    readonly _tag: "Request"
    readonly method: string
    readonly params: unknown
    /** Accepts the result (returning what it tells) or rejects it with a reason. */
    readonly validate: (result: unknown) => Effect.Effect<HandshakeInfo, string>
    readonly afterwards: { readonly method: string; readonly params?: unknown } | undefined
    /**
     * Whether an error reply passes (without `validate`): any answer proves the plugin is alive
     * and speaking the protocol — for liveness checks of plugins whose methods are unknown.
     */
    readonly acceptErrorReplies: boolean
    /** Computes `params` from the plugin once the client knows it (see {@link forPlugin}). */
    readonly paramsFor?: ((plugin: PluginIdentity) => unknown) | undefined
    /** The level the dialect logs plugin stderr at, when the client is not told one. */
    readonly stderrLogLevel?: StderrLogLevel | undefined
  }

/**
 * No handshake: the plugin is ready once spawned.
 *
 * @category constructors
 */
export const none: Handshake = { _tag: "None" }

/**
 * A request handshake. Without `validate`, any non-error result is accepted.
 *
 * @category constructors
 */
export const make = (options: {
  readonly method: string
  readonly params?: unknown
  readonly validate?: ((result: unknown) => Effect.Effect<HandshakeInfo, string>) | undefined
  readonly afterwards?: { readonly method: string; readonly params?: unknown } | undefined
  readonly acceptErrorReplies?: boolean | undefined
  /** Computes the params from the plugin; `params` is then ignored. */
  readonly paramsFor?: ((plugin: PluginIdentity) => unknown) | undefined
  readonly stderrLogLevel?: StderrLogLevel | undefined
}): Handshake => ({
  _tag: "Request",
  method: options.method,
  params: options.params,
  validate: options.validate ?? (() => Effect.succeed({})),
  afterwards: options.afterwards,
  acceptErrorReplies: options.acceptErrorReplies ?? false,
  paramsFor: options.paramsFor,
  stderrLogLevel: options.stderrLogLevel
})

/**
 * The handshake as sent to `plugin`: params that depend on the plugin are computed from it.
 * Clients call this once, when they are made; a handshake without such params is unchanged.
 *
 * @category combinators
 */
export const forPlugin = (handshake: Handshake, plugin: PluginIdentity): Handshake =>
  handshake._tag === "Request" && handshake.paramsFor !== undefined
    ? { ...handshake, params: handshake.paramsFor(plugin), paramsFor: undefined }
    : handshake

/**
 * The level the plugin's stderr is logged at under this handshake's dialect, if it has one.
 *
 * @category getters
 */
export const stderrLogLevel = (handshake: Handshake): StderrLogLevel | undefined =>
  handshake._tag === "Request" ? handshake.stderrLogLevel : undefined

/**
 * A liveness handshake: sends `method` (default `health`) and accepts any answer, an error
 * reply included; only silence, an exit or garbage fail it.
 *
 * @category presets
 */
export const liveness = (method = "health"): Handshake => make({ method, acceptErrorReplies: true })

const decodeInitialize = Schema.decodeUnknownResult(Protocol.InitializeResult)

const validateInitialize = (result: unknown): Effect.Effect<HandshakeInfo, string> => {
  const decoded = decodeInitialize(result)
  if (Result.isFailure(decoded)) {
    return Effect.fail(`initialize returned ${JSON.stringify(result)?.slice(0, 200)}, expected {ok, supportedMethods?}`)
  }
  if (!decoded.success.ok) {
    const why = decoded.success.error === undefined ? "" : `: ${JSON.stringify(decoded.success.error).slice(0, 200)}`
    return Effect.fail(`initialize answered ok: false${why}`)
  }
  return Effect.succeed({ supportedMethods: decoded.success.supportedMethods })
}

/**
 * The worker SDK dialect: `initialize` with the caller's params (none by default) must answer
 * `{ok: true, supportedMethods?}`; `ok: false` is a refusal. For plugins written to Paperclip's
 * SDK, use {@link paperclip}: its worker reads `params.manifest` and fails without it.
 *
 * @category presets
 */
export const initialize = (params?: unknown): Handshake =>
  make({ method: "initialize", params, validate: validateInitialize })

/**
 * What a Paperclip host tells a worker about itself in `initialize`.
 *
 * @category models
 */
export interface InstanceInfo {
  /** The host instance's id (Paperclip: a UUID). */
  readonly instanceId: string
  /** The host's semver version. */
  readonly hostVersion: string
}

/**
 * The id this host process gives itself in Paperclip handshakes, unless told one: one UUID per
 * process, as a Paperclip instance has one id for its life.
 */
const processInstanceId: string = globalThis.crypto.randomUUID()

/**
 * Paperclip's `initialize` params, with the plugin's manifest when none is given: a Paperclip
 * manifest snapshot (`id`, `apiVersion`, `version`, `displayName`, `entrypoints.worker`) made
 * from the host's manifest.
 *
 * @category presets
 */
export const paperclipParams = (
  plugin: PluginIdentity,
  options?: PaperclipOptions
): { manifest: unknown; config: unknown; instanceInfo: InstanceInfo; apiVersion: number } => {
  const apiVersion = options?.apiVersion ?? 1
  return {
    manifest: options?.manifest ?? {
      id: plugin.name,
      apiVersion,
      version: plugin.version ?? "0.0.0",
      displayName: plugin.name,
      entrypoints: { worker: plugin.executable }
    },
    config: options?.config ?? {},
    instanceInfo: options?.instanceInfo ?? { instanceId: processInstanceId, hostVersion: HostVersion.version },
    apiVersion
  }
}

/**
 * Options of the {@link paperclip} preset; every field has a default.
 *
 * @category models
 */
export interface PaperclipOptions {
  /** The manifest snapshot sent to the worker. Default one made from the plugin's manifest. */
  readonly manifest?: unknown
  /** The bootstrap configuration. Default `{}`. */
  readonly config?: Readonly<Record<string, unknown>> | undefined
  /** Default this host process's id (a UUID made at load) and this package's version. */
  readonly instanceInfo?: InstanceInfo | undefined
  /** The host API version. Default 1. */
  readonly apiVersion?: number | undefined
}

/**
 * The Paperclip worker dialect: `initialize` with `{manifest, config, instanceInfo:
 * {instanceId, hostVersion}, apiVersion}` (see {@link paperclipParams}), answered by
 * `{ok: true, supportedMethods?}` (`ok: false` is a refusal). The plugin's stderr is logged at
 * `Warn`, as Paperclip does, unless the client is given `stderrLogLevel`. This is the
 * `PluginManager`'s default for eager plugins.
 *
 * @category presets
 */
export const paperclip = (options?: PaperclipOptions): Handshake =>
  make({
    method: "initialize",
    paramsFor: (plugin) => paperclipParams(plugin, options),
    validate: validateInitialize,
    stderrLogLevel: "Warn"
  })

/**
 * Options of the {@link secretSource} preset.
 *
 * @category models
 */
export interface SecretSourceOptions {
  /** The source's name. Default the plugin's name (devboy's `devboy-source-<name>`). */
  readonly sourceName?: string | undefined
  /** Default `"1.0"`, the version devboy's guide specifies. */
  readonly protocolVersion?: string | undefined
}

/**
 * The devboy secret-source dialect: `secret_source.init` with
 * `{source_name, config, protocol_version: "1.0"}` (`config` defaults to `{}`, `source_name`
 * to the plugin's name); any non-error result (devboy's `{source_name, capabilities_bits,
 * plugin_version}`) is accepted.
 *
 * @category presets
 */
export const secretSource = (config?: unknown, options?: SecretSourceOptions): Handshake =>
  make({
    method: "secret_source.init",
    paramsFor: (plugin) => ({
      source_name: options?.sourceName ?? plugin.name,
      config: config ?? {},
      protocol_version: options?.protocolVersion ?? "1.0"
    })
  })
