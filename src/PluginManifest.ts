/**
 * Plugin manifests: what a plugin is, where its executable lives and how it may be run.
 *
 * This module owns the {@link PluginManifest} Schema class (and its {@link PollerSection}),
 * the two on-disk formats (TOML with snake_case keys, JSON with camelCase keys), the rule tying
 * a manifest's file name to the plugin name, executable resolution and SHA-256 integrity
 * checks ({@link verify}, run at discovery and again before every spawn), and discovery of
 * every manifest in a plugin folder ({@link discover}), where a bad manifest never hides the
 * good ones.
 *
 * Every failure is a {@link ManifestError} naming the manifest file, with a tagged `reason`
 * (`NotFound`, `Invalid`, `NameMismatch`, `ExecutableMissing`, `ChecksumMismatch`) and a
 * message a person can act on, for example
 * ``manifest /etc/plugins/devboy-source-vault.toml: unknown key `allowed_env` ``.
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Toml from "effect/encoding/Toml"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import type * as PlatformError from "effect/PlatformError"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import * as SchemaIssue from "effect/SchemaIssue"
import * as Stream from "effect/Stream"
import { formatDuration } from "./internal/formatDuration.ts"
import * as PluginEnvironment from "./internal/pluginEnvironment.ts"
import * as VerifiedExecutable from "./internal/verifiedExecutable.ts"

// ---------------------------------------------------------------------------------------------
// field schemas
// ---------------------------------------------------------------------------------------------

const firstDuplicate = (values: ReadonlyArray<string>): string | undefined => {
  const seen = new Set<string>()
  for (const value of values) {
    if (seen.has(value)) return value
    seen.add(value)
  }
  return undefined
}

/**
 * A plugin name: a lowercase letter, then lowercase letters, digits, `_`, `.` or `-`.
 *
 * @category schemas
 */
export const Name = Schema.String.check(
  Schema.isPattern(/^[a-z][a-z0-9_.-]*$/, {
    expected: "a name that starts with a lowercase letter and has only a-z, 0-9, `_`, `.` and `-`"
  })
)

/**
 * A string that is not empty (`version`, `executable`).
 *
 * @category schemas
 */
export const NonEmptyText = Schema.String.check(Schema.isMinLength(1, { expected: "a non-empty string" }))

/**
 * A declared SHA-256 digest: exactly 64 hexadecimal characters, either case.
 *
 * @category schemas
 */
export const ChecksumSha256 = Schema.String.check(
  Schema.isPattern(/^[0-9a-fA-F]{64}$/, { expected: "exactly 64 hexadecimal characters (a SHA-256 digest)" })
)

/**
 * Checksums of files other than the executable (the script an interpreter runs, a config file it
 * reads): path (relative to the manifest's folder, or absolute) → SHA-256. Each is hashed in
 * place before every spawn.
 *
 * @category schemas
 */
export const Checksums = Schema.Record(NonEmptyText, ChecksumSha256)

/**
 * An environment variable name: letters, digits and `_`, not starting with a digit.
 *
 * @category schemas
 */
export const EnvVarName = Schema.String.check(
  Schema.isPattern(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    expected: "an environment variable name (letters, digits and `_`, not starting with a digit)"
  })
)

/**
 * A poller kind: a lowercase letter followed by at least one of a-z, 0-9, `_`.
 *
 * @category schemas
 */
export const Kind = Schema.String.check(
  Schema.isPattern(/^[a-z][a-z0-9_]+$/, {
    expected: "a poller kind: a lowercase letter followed by one or more of a-z, 0-9 and `_`"
  })
)

/**
 * The kinds a poller serves: at least one, no duplicates.
 *
 * @category schemas
 */
export const Kinds = Schema.Array(Kind).check(
  Schema.isMinLength(1, { expected: "at least one poller kind" }),
  Schema.makeFilter<ReadonlyArray<string>>((kinds) => {
    const duplicate = firstDuplicate(kinds)
    return duplicate === undefined ? undefined : `duplicate kind ${JSON.stringify(duplicate)}`
  })
)

/**
 * The broker subject prefix of a long-lived poller (`<prefix>.tick`): not empty, no trailing
 * `.`, no whitespace.
 *
 * @category schemas
 */
export const BrokerTopicPrefix = Schema.String.check(
  Schema.isMinLength(1, { expected: "a non-empty broker topic prefix" }),
  Schema.makeFilter<string>((prefix) =>
    !prefix.endsWith(".") || `must not end with "." (the host appends ".tick"), got ${JSON.stringify(prefix)}`
  ),
  Schema.makeFilter<string>((prefix) => !/\s/.test(prefix) || `must not contain whitespace, got ${JSON.stringify(prefix)}`)
)

/**
 * How a poller plugin runs: one process per tick (`ephemeral`) or a long-lived worker reached
 * over the broker (`long_lived`).
 *
 * @category schemas
 */
export const Lifecycle = Schema.Literals(["long_lived", "ephemeral"])
export type Lifecycle = typeof Lifecycle.Type

/**
 * How many ticks of one poller may run at once: an integer from 1 to 64.
 *
 * @category schemas
 */
export const MaxConcurrentTicks = Schema.Int.check(
  Schema.isBetween({ minimum: 1, maximum: 64 }, { expected: "an integer from 1 to 64" })
)

/**
 * A tick timeout in seconds as written in a manifest file: from 1 to 3600.
 *
 * @category schemas
 */
export const TickTimeoutSecs = Schema.Finite.check(
  Schema.isBetween({ minimum: 1, maximum: 3600 }, { expected: "a number of seconds from 1 to 3600" })
)

const minTickTimeout = Duration.seconds(1)
const maxTickTimeout = Duration.hours(1)

/**
 * A tick timeout: from 1 second to 1 hour.
 *
 * @category schemas
 */
export const TickTimeout = Schema.Duration.check(
  Schema.makeFilter<Duration.Duration>((timeout) =>
    Duration.between(timeout, { minimum: minTickTimeout, maximum: maxTickTimeout }) ||
    `expected a duration from 1s to 1h, got ${formatDuration(timeout)}`
  )
)

/**
 * A NATS service name (NATS micro, ADR-32): letters, digits, `-` and `_`.
 *
 * @category schemas
 */
export const ServiceName = Schema.String.check(
  Schema.isPattern(/^[A-Za-z0-9_-]+$/, { expected: "a NATS service name: letters, digits, `-` and `_`" })
)

/**
 * The NATS servers of a remote plugin: at least one `host:port` or `nats://host:port`.
 *
 * @category schemas
 */
export const Servers = Schema.Array(NonEmptyText).check(Schema.isMinLength(1, { expected: "at least one server" }))

/**
 * The name of a set of NATS servers the host is configured with (`PLUGIN_HOST_NATS_SERVERS_<NAME>`):
 * a lowercase letter, then a-z, 0-9 and `_`.
 *
 * @category schemas
 */
export const ServerSet = Schema.String.check(
  Schema.isPattern(/^[a-z][a-z0-9_]*$/, { expected: "a server set name: a lowercase letter, then a-z, 0-9 and `_`" })
)

/**
 * How many instances of a remote plugin make it healthy: an integer from 1 to 1000 (with none
 * it is failed whatever this says).
 *
 * @category schemas
 */
export const MinInstances = Schema.Int.check(
  Schema.isBetween({ minimum: 1, maximum: 1_000 }, { expected: "an integer from 1 to 1000" })
)
/**
 * How messages are delimited on the plugin's stdio: `ndjson` (one JSON text per line) or
 * `content-length` (LSP's base protocol). Overrides the lifetime policy's `framing`.
 *
 * @category schemas
 */
export const Framing = Schema.Literals(["ndjson", "content-length"])

/**
 * What the host sends when it gives up a call: `lsp` (`$/cancelRequest`), `mcp`
 * (`notifications/cancelled`) or `none`. Overrides the lifetime policy's `cancellation`.
 *
 * @category schemas
 */
export const Cancellation = Schema.Literals(["lsp", "mcp", "none"])

/**
 * A JSON-RPC method name a manifest declares: not empty, no whitespace.
 *
 * @category schemas
 */
export const MethodName = Schema.String.check(
  Schema.isPattern(/^\S+$/, { expected: "a method name (not empty, no whitespace)" })
)

/**
 * The `[discovery]` section: the methods listing the plugin's tools (`tools`, e.g.
 * `tools/list`) and resources (`resources`, e.g. `resources/list`). `plugin-host doctor` runs
 * discovery for a plugin that declares it (without `tools`, its tools are the methods its
 * handshake announced).
 *
 * @category schemas
 */
export const DiscoverySection = Schema.Struct({
  tools: Schema.optionalKey(MethodName),
  resources: Schema.optionalKey(MethodName)
})
export type DiscoverySection = typeof DiscoverySection.Type

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * The `[poller]` section of a manifest: the plugin serves poller ticks for `kinds`.
 * `maxConcurrentTicks` defaults to 1 and `tickTimeout` to 60 seconds.
 *
 * @category models
 */
export class PollerSection extends Schema.Class<PollerSection>("PollerSection")({
  kinds: Kinds,
  brokerTopicPrefix: Schema.optionalKey(BrokerTopicPrefix),
  lifecycle: Lifecycle,
  maxConcurrentTicks: MaxConcurrentTicks.pipe(Schema.withConstructorDefault(Effect.succeed(1))),
  tickTimeout: TickTimeout.pipe(Schema.withConstructorDefault(Effect.succeed(Duration.seconds(60))))
}) {}

/**
 * The `[remote]` section of a manifest: the plugin runs elsewhere, as a NATS service whose
 * instances serve `<subjectPrefix>.call` (`PluginWorker.serveBroker`), and the host reaches it
 * with a `RemotePlugin` client instead of spawning `executable` (which names the worker program
 * the instances run). `service` defaults to the plugin's name; `servers` to the named
 * `serverSet` the host is configured with, else its default servers; `idempotent` lists the methods that may be sent again when no instance answers
 * or the one serving a call is lost (default none); below `minInstances` (default 1) instances
 * the plugin is degraded.
 *
 * @category models
 */
export class RemoteSection extends Schema.Class<RemoteSection>("RemoteSection")({
  subjectPrefix: BrokerTopicPrefix,
  service: Schema.optionalKey(ServiceName),
  servers: Schema.optionalKey(Servers),
  serverSet: Schema.optionalKey(ServerSet),
  idempotent: Schema.Array(NonEmptyText).pipe(Schema.withConstructorDefault(Effect.succeed([]))),
  minInstances: MinInstances.pipe(Schema.withConstructorDefault(Effect.succeed(1)))
}) {}

/**
 * One plugin: its name, version, executable (absolute, or relative to the manifest's folder),
 * fixed arguments, the host environment variables it may see (with `unsafeEnvVars`, the
 * loader/interpreter-injection variables among them it is deliberately allowed, which a file
 * must mark or it is rejected at load), an optional SHA-256 of the executable, an optional
 * poller section, the wire it speaks when it differs from the host's policy (`framing`,
 * `cancellation`), the methods listing its tools and resources (`discovery`), and a remote
 * section when it runs on other machines (see {@link RemoteSection}). `args` and
 * `allowedEnvVars` default to `[]`.
 *
 * The constructor validates every field (and throws on invalid input); files are read with
 * {@link parse} / {@link load}, which fail with a {@link ManifestError} instead.
 *
 * @category models
 */
export class PluginManifest extends Schema.Class<PluginManifest>("PluginManifest")({
  name: Name,
  version: NonEmptyText,
  executable: NonEmptyText,
  args: Schema.Array(Schema.String).pipe(Schema.withConstructorDefault(Effect.succeed([]))),
  allowedEnvVars: Schema.Array(EnvVarName).pipe(Schema.withConstructorDefault(Effect.succeed([]))),
  /** Loader/interpreter-injection variables (`NODE_OPTIONS`, `LD_PRELOAD`…) deliberately allowed. */
  unsafeEnvVars: Schema.optionalKey(Schema.Array(EnvVarName)),
  checksumSha256: Schema.optionalKey(ChecksumSha256),
  checksums: Schema.optionalKey(Checksums),
  poller: Schema.optionalKey(PollerSection),
  remote: Schema.optionalKey(RemoteSection),
  framing: Schema.optionalKey(Framing),
  cancellation: Schema.optionalKey(Cancellation),
  discovery: Schema.optionalKey(DiscoverySection)
}) {
  /**
   * Where the manifest was read from, set by {@link load} and {@link discover} (and by
   * {@link withLocation}); `undefined` for a manifest built in code. A relative `executable` is
   * resolved against `location.dir`, so a loaded manifest can be run from any working
   * directory without repeating its folder.
   *
   * It is not a schema field: encoding a manifest (to JSON or TOML) never writes it, and the
   * files decode exactly as before. It is an own, non-enumerable property, so it travels with
   * the value wherever it is passed, stays out of `JSON.stringify` and spreads, and takes part
   * in `Equal.equals` (the same fields in two folders run two different executables).
   */
  declare readonly location: Location | undefined
}

/**
 * The file a manifest was read from (absolute) and its folder, which a relative `executable`
 * is resolved against.
 *
 * @category models
 */
export interface Location {
  readonly file: string
  readonly dir: string
}

/**
 * The fields of a {@link PollerSection}, as accepted by its constructor.
 *
 * @category models
 */
export type PollerSectionInput = (typeof PollerSection)["~type.make.in"]

/**
 * The fields of a {@link RemoteSection}, as accepted by its constructor.
 *
 * @category models
 */
export type RemoteSectionInput = (typeof RemoteSection)["~type.make.in"]

/**
 * The fields of a {@link PluginManifest} for {@link make}: like the constructor's, except that
 * `poller` may also be given as plain fields.
 *
 * @category models
 */
export type MakeInput = Omit<(typeof PluginManifest)["~type.make.in"], "poller" | "remote"> & {
  readonly poller?: PollerSection | PollerSectionInput
  readonly remote?: RemoteSection | RemoteSectionInput
}

/**
 * Builds a manifest in code, applying the defaults. Throws when a field breaks a rule (like
 * the class constructor); use {@link parse} for untrusted input.
 *
 * @category constructors
 */
export const make = (input: MakeInput): PluginManifest => {
  const { poller, remote, ...fields } = input
  return new PluginManifest({
    ...fields,
    ...(poller === undefined ? {} : { poller: poller instanceof PollerSection ? poller : new PollerSection(poller) }),
    ...(remote === undefined ? {} : { remote: remote instanceof RemoteSection ? remote : new RemoteSection(remote) })
  })
}

/**
 * The same manifest, read from `location`: a copy whose relative `executable` resolves against
 * `location.dir`. {@link load} and {@link discover} call it; use it for a manifest parsed from
 * text ({@link parse}) or built in code that belongs to a folder.
 *
 * @category constructors
 */
export const withLocation = (manifest: PluginManifest, location: Location): PluginManifest => {
  const { poller, remote, checksumSha256, checksums, ...fields } = manifest
  const copy = new PluginManifest({
    ...fields,
    ...(checksumSha256 === undefined ? {} : { checksumSha256 }),
    ...(checksums === undefined ? {} : { checksums }),
    ...(poller === undefined ? {} : { poller }),
    ...(remote === undefined ? {} : { remote })
  })
  Object.defineProperty(copy, "location", { value: { file: location.file, dir: location.dir }, enumerable: false })
  return copy
}

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

/**
 * The manifest file does not exist, or (with `directory: true`, from {@link discover}) the
 * plugin folder does not.
 *
 * @category reasons
 */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  directory: Schema.optionalKey(Schema.Boolean)
}) {
  override get message() {
    return this.directory === true ? "directory does not exist" : "file not found"
  }
}

/**
 * The manifest could not be read or parsed, has unknown keys, or breaks a field rule.
 * `detail` names the offending keys, `;`-separated when there are several.
 *
 * @category reasons
 */
export class Invalid extends Schema.TaggedError<Invalid>()("Invalid", {
  detail: Schema.String
}) {
  override get message() {
    return this.detail
  }
}

/**
 * The file stem is neither the declared `name` nor ends with `-<name>`.
 *
 * @category reasons
 */
export class NameMismatch extends Schema.TaggedError<NameMismatch>()("NameMismatch", {
  name: Schema.String,
  stem: Schema.String
}) {
  override get message() {
    return `declares name \`${this.name}\`, but the file name \`${this.stem}\` is neither \`${this.name}\` nor ends with \`-${this.name}\``
  }
}

/**
 * The resolved executable does not exist or is not a regular file. `detail` says which
 * (default: does not exist).
 *
 * @category reasons
 */
export class ExecutableMissing extends Schema.TaggedError<ExecutableMissing>()("ExecutableMissing", {
  executable: Schema.String,
  detail: Schema.optionalKey(Schema.String)
}) {
  override get message() {
    return `executable ${this.executable} ${this.detail ?? "does not exist"}`
  }
}

/**
 * The executable's SHA-256 differs from the declared one. Both digests are lowercase hex.
 *
 * @category reasons
 */
export class ChecksumMismatch extends Schema.TaggedError<ChecksumMismatch>()("ChecksumMismatch", {
  executable: Schema.String,
  declared: Schema.String,
  actual: Schema.String,
  /** The file declared in `checksums` that differs, when it is not the executable. */
  file: Schema.optionalKey(Schema.String)
}) {
  override get message() {
    return `checksum mismatch for ${this.file ?? this.executable} (declared ${this.declared}, actual ${this.actual})`
  }
}

/**
 * Every reason a manifest can be rejected.
 *
 * @category models
 */
export const Reason = Schema.Union([NotFound, Invalid, NameMismatch, ExecutableMissing, ChecksumMismatch])
export type Reason = typeof Reason.Type

/**
 * A manifest that cannot be used. `path` is the manifest file (or, for {@link verify} of a
 * manifest built in code without `manifestPath`, the folder it was resolved against; for a
 * {@link discover} of a missing folder, that folder).
 *
 * @category errors
 */
export class ManifestError extends Schema.TaggedError<ManifestError>()("ManifestError", {
  path: Schema.String,
  reason: Reason
}) {
  override get message() {
    return this.reason._tag === "NotFound" && this.reason.directory === true
      ? `plugin directory ${this.path} does not exist`
      : `manifest ${this.path}: ${this.reason.message}`
  }
}

const fail = (path: string, reason: Reason): Effect.Effect<never, ManifestError> =>
  Effect.fail(new ManifestError({ path, reason }))

const isNotFound = (error: PlatformError.PlatformError): boolean => error.reason._tag === "NotFound"

// ---------------------------------------------------------------------------------------------
// file formats
// ---------------------------------------------------------------------------------------------

const Strings = Schema.Array(Schema.String)
const EnvVarNames = Schema.Array(EnvVarName)

const JsonPoller = Schema.Struct({
  kinds: Kinds,
  brokerTopicPrefix: Schema.optionalKey(BrokerTopicPrefix),
  lifecycle: Lifecycle,
  maxConcurrentTicks: Schema.optionalKey(MaxConcurrentTicks),
  tickTimeoutSecs: Schema.optionalKey(TickTimeoutSecs)
})

const JsonRemote = Schema.Struct({
  subjectPrefix: BrokerTopicPrefix,
  service: Schema.optionalKey(ServiceName),
  servers: Schema.optionalKey(Servers),
  serverSet: Schema.optionalKey(ServerSet),
  idempotent: Schema.optionalKey(Schema.Array(NonEmptyText)),
  minInstances: Schema.optionalKey(MinInstances)
})

const JsonFile = Schema.Struct({
  // Where an editor finds the manifest's JSON Schema (`plugin-manifest.schema.json`); ignored.
  $schema: Schema.optionalKey(Schema.String),
  name: Name,
  version: NonEmptyText,
  executable: NonEmptyText,
  args: Schema.optionalKey(Strings),
  allowedEnvVars: Schema.optionalKey(EnvVarNames),
  unsafeEnvVars: Schema.optionalKey(EnvVarNames),
  checksumSha256: Schema.optionalKey(ChecksumSha256),
  checksums: Schema.optionalKey(Checksums),
  poller: Schema.optionalKey(JsonPoller),
  remote: Schema.optionalKey(JsonRemote),
  framing: Schema.optionalKey(Framing),
  cancellation: Schema.optionalKey(Cancellation),
  discovery: Schema.optionalKey(DiscoverySection)
})

const TomlPoller = Schema.Struct({
  kinds: Kinds,
  broker_topic_prefix: Schema.optionalKey(BrokerTopicPrefix),
  lifecycle: Lifecycle,
  max_concurrent_ticks: Schema.optionalKey(MaxConcurrentTicks),
  tick_timeout_secs: Schema.optionalKey(TickTimeoutSecs)
})

const TomlRemote = Schema.Struct({
  subject_prefix: BrokerTopicPrefix,
  service: Schema.optionalKey(ServiceName),
  servers: Schema.optionalKey(Servers),
  server_set: Schema.optionalKey(ServerSet),
  idempotent: Schema.optionalKey(Schema.Array(NonEmptyText)),
  min_instances: Schema.optionalKey(MinInstances)
})

const TomlFile = Schema.Struct({
  name: Name,
  version: NonEmptyText,
  executable: NonEmptyText,
  args: Schema.optionalKey(Strings),
  allowed_env_vars: Schema.optionalKey(EnvVarNames),
  unsafe_env_vars: Schema.optionalKey(EnvVarNames),
  checksum_sha256: Schema.optionalKey(ChecksumSha256),
  checksums: Schema.optionalKey(Checksums),
  poller: Schema.optionalKey(TomlPoller),
  remote: Schema.optionalKey(TomlRemote),
  framing: Schema.optionalKey(Framing),
  cancellation: Schema.optionalKey(Cancellation),
  discovery: Schema.optionalKey(DiscoverySection)
})

/** Both file formats map onto this (the JSON shape). */
type FileFields = typeof JsonFile.Type

const fromTomlRemote = (remote: typeof TomlRemote.Type): typeof JsonRemote.Type => ({
  subjectPrefix: remote.subject_prefix,
  ...(remote.service === undefined ? {} : { service: remote.service }),
  ...(remote.servers === undefined ? {} : { servers: remote.servers }),
  ...(remote.server_set === undefined ? {} : { serverSet: remote.server_set }),
  ...(remote.idempotent === undefined ? {} : { idempotent: remote.idempotent }),
  ...(remote.min_instances === undefined ? {} : { minInstances: remote.min_instances })
})

/** The keys both formats spell alike: the wire the plugin speaks and its discovery methods. */
const wireOf = (file: Pick<FileFields, "framing" | "cancellation" | "discovery">) => ({
  ...(file.framing === undefined ? {} : { framing: file.framing }),
  ...(file.cancellation === undefined ? {} : { cancellation: file.cancellation }),
  ...(file.discovery === undefined ? {} : { discovery: file.discovery })
})

const fromToml = (file: typeof TomlFile.Type): FileFields => {
  const poller = file.poller
  return {
    ...(file.remote === undefined ? {} : { remote: fromTomlRemote(file.remote) }),
    name: file.name,
    version: file.version,
    executable: file.executable,
    ...(file.args === undefined ? {} : { args: file.args }),
    ...(file.allowed_env_vars === undefined ? {} : { allowedEnvVars: file.allowed_env_vars }),
    ...(file.unsafe_env_vars === undefined ? {} : { unsafeEnvVars: file.unsafe_env_vars }),
    ...(file.checksum_sha256 === undefined ? {} : { checksumSha256: file.checksum_sha256 }),
    ...(file.checksums === undefined ? {} : { checksums: file.checksums }),
    ...wireOf(file),
    ...(poller === undefined ? {} : {
      poller: {
        kinds: poller.kinds,
        lifecycle: poller.lifecycle,
        ...(poller.broker_topic_prefix === undefined ? {} : { brokerTopicPrefix: poller.broker_topic_prefix }),
        ...(poller.max_concurrent_ticks === undefined ? {} : { maxConcurrentTicks: poller.max_concurrent_ticks }),
        ...(poller.tick_timeout_secs === undefined ? {} : { tickTimeoutSecs: poller.tick_timeout_secs })
      }
    })
  }
}

const toManifestInput = (file: FileFields): MakeInput => {
  const poller = file.poller
  return {
    ...(file.remote === undefined ? {} : { remote: file.remote }),
    name: file.name,
    version: file.version,
    executable: file.executable,
    ...(file.args === undefined ? {} : { args: file.args }),
    ...(file.allowedEnvVars === undefined ? {} : { allowedEnvVars: file.allowedEnvVars }),
    ...(file.unsafeEnvVars === undefined ? {} : { unsafeEnvVars: file.unsafeEnvVars }),
    ...(file.checksumSha256 === undefined ? {} : { checksumSha256: file.checksumSha256 }),
    ...(file.checksums === undefined ? {} : { checksums: file.checksums }),
    ...wireOf(file),
    ...(poller === undefined ? {} : {
      poller: {
        kinds: poller.kinds,
        lifecycle: poller.lifecycle,
        ...(poller.brokerTopicPrefix === undefined ? {} : { brokerTopicPrefix: poller.brokerTopicPrefix }),
        ...(poller.maxConcurrentTicks === undefined ? {} : { maxConcurrentTicks: poller.maxConcurrentTicks }),
        ...(poller.tickTimeoutSecs === undefined ? {} : { tickTimeout: Duration.seconds(poller.tickTimeoutSecs) })
      }
    })
  }
}

const parseOptions: SchemaAST.ParseOptions = { errors: "all", onExcessProperty: "error", reportInput: true }

const UNKNOWN_KEY = "unknown key"
const MISSING_KEY = "missing key"

const issueFormatter = SchemaIssue.makeFormatterStandardSchemaV1({
  leafHook: (issue) =>
    issue._tag === "UnexpectedKey"
      ? UNKNOWN_KEY
      : issue._tag === "MissingKey"
      ? MISSING_KEY
      : SchemaIssue.defaultLeafHook(issue)
})

const renderPath = (path: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }>): string =>
  path.reduce<string>((out, segment) => {
    const key = typeof segment === "object" ? segment.key : segment
    return typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`
  }, "")

const lowerFirst = (text: string): string => text.charAt(0).toLowerCase() + text.slice(1)

/**
 * Renders a Schema issue as one line per problem, naming each key by its path in the file
 * (`` unknown key `poller.foo` ``, `` `poller.max_concurrent_ticks`: expected an integer from 1 to 64, got 0 ``).
 *
 * @category formatting
 */
export const formatIssue = (issue: SchemaIssue.Issue): string =>
  issueFormatter(issue).issues.map(({ message, path }) => {
    const at = renderPath(path ?? [])
    if (message === UNKNOWN_KEY) return `unknown key \`${at}\``
    if (message === MISSING_KEY) return `missing key \`${at}\``
    const text = lowerFirst(message)
    return at === "" ? text : `\`${at}\`: ${text}`
  }).join("; ")

/** The last path segment, whichever separator is used. */
const baseName = (path: string): string => path.slice(Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) + 1)

/**
 * The file name without its last extension: `devboy-source-vault` for
 * `/etc/plugins/devboy-source-vault.toml`.
 *
 * @category naming
 */
export const stemOf = (path: string): string => {
  const base = baseName(path)
  const dot = base.lastIndexOf(".")
  return dot > 0 ? base.slice(0, dot) : base
}

/**
 * Whether a file stem may declare `name`: it is `name` or ends with `-<name>`.
 *
 * @category naming
 */
export const stemMatches = (stem: string, name: string): boolean => stem === name || stem.endsWith(`-${name}`)

const decodeFile = (text: string, path: string): Result.Result<FileFields, Invalid> => {
  if (path.endsWith(".toml")) {
    const parsed = Toml.parse(text)
    if (Result.isFailure(parsed)) return Result.fail(new Invalid({ detail: `invalid TOML: ${parsed.failure.message}` }))
    return Schema.decodeUnknownResult(TomlFile)(parsed.success, parseOptions).pipe(
      Result.map(fromToml),
      Result.mapError((error) => new Invalid({ detail: formatIssue(error.issue) }))
    )
  }
  if (path.endsWith(".json")) {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (cause) {
      return Result.fail(new Invalid({ detail: `invalid JSON: ${cause instanceof Error ? cause.message : String(cause)}` }))
    }
    return Schema.decodeUnknownResult(JsonFile)(json, parseOptions).pipe(
      Result.mapError((error) => new Invalid({ detail: formatIssue(error.issue) }))
    )
  }
  const base = baseName(path)
  const dot = base.lastIndexOf(".")
  const extension = dot > 0 ? `\`${base.slice(dot)}\`` : "no extension"
  return Result.fail(new Invalid({ detail: `unsupported manifest format (${extension}; expected .toml or .json)` }))
}

/**
 * The allow-listed loader/interpreter-injection variables (`NODE_OPTIONS`, `LD_PRELOAD`…) that
 * `unsafe_env_vars` does not mark, as one sentence per name in the file's spelling.
 */
const unmarkedInjection = (fields: FileFields, format: "toml" | "json"): string | undefined => {
  const found = PluginEnvironment.problems(
    { allowedEnvVars: fields.allowedEnvVars ?? [], envNames: [], unsafeEnvVars: fields.unsafeEnvVars ?? [] },
    format === "toml"
      ? { allowed: "allowed_env_vars", env: "env", unsafe: "unsafe_env_vars" }
      : { allowed: "allowedEnvVars", env: "env", unsafe: "unsafeEnvVars" }
  )
  return found.length === 0 ? undefined : found.join("; ")
}

// ---------------------------------------------------------------------------------------------
// parsing and loading
// ---------------------------------------------------------------------------------------------

/**
 * Parses a manifest from its text. The format comes from the extension of `path` (`.toml` or
 * `.json`); unknown keys, wrong types and broken rules fail with `Invalid` naming the keys, and
 * a file stem that does not fit the name fails with `NameMismatch`. Reads nothing from disk.
 *
 * @category parsing
 */
export const parse = (text: string, path: string): Effect.Effect<PluginManifest, ManifestError> =>
  Effect.suspend(() => {
    const decoded = decodeFile(text, path)
    if (Result.isFailure(decoded)) return fail(path, decoded.failure)
    const fields = decoded.success
    const unmarked = unmarkedInjection(fields, path.endsWith(".toml") ? "toml" : "json")
    if (unmarked !== undefined) return fail(path, new Invalid({ detail: unmarked }))
    const stem = stemOf(path)
    if (!stemMatches(stem, fields.name)) return fail(path, new NameMismatch({ name: fields.name, stem }))
    // The file schemas enforce the same rules as the class, so this only fails on a bug.
    return Effect.try({
      try: () => make(toManifestInput(fields)),
      catch: (cause) =>
        new ManifestError({
          path,
          reason: new Invalid({
            detail: cause instanceof Error && SchemaIssue.isIssue(cause.cause) ? formatIssue(cause.cause) : String(cause)
          })
        })
    })
  })

/**
 * Reads and parses a manifest file. The manifest knows where it came from: its `location` is
 * the absolute file and folder, so a relative `executable` resolves against the manifest's
 * folder whatever the working directory. A missing file fails with `NotFound`; a file that
 * cannot be read (a directory, no permission) with `Invalid`.
 *
 * @category parsing
 */
export const load = Effect.fn("PluginManifest.load")(function*(
  path: string
): Effect.fn.Return<PluginManifest, ManifestError, FileSystem.FileSystem | Path.Path> {
  const fs = yield* FileSystem.FileSystem
  const paths = yield* Path.Path
  const text = yield* fs.readFileString(path).pipe(
    Effect.catch((error) =>
      fail(path, isNotFound(error) ? new NotFound() : new Invalid({ detail: `cannot be read: ${error.message}` }))
    )
  )
  const manifest = yield* parse(text, path)
  const file = paths.resolve(path)
  return withLocation(manifest, { file, dir: paths.dirname(file) })
})

// ---------------------------------------------------------------------------------------------
// integrity
// ---------------------------------------------------------------------------------------------

/**
 * The SHA-256 of a file as lowercase hex. The file is streamed, so its size does not matter.
 *
 * @category integrity
 */
export const checksum = (filePath: string): Effect.Effect<string, PlatformError.PlatformError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const hash = createHash("sha256")
    yield* fs.stream(filePath).pipe(Stream.runForEach((chunk) => Effect.sync(() => hash.update(chunk))))
    return hash.digest("hex")
  })

/**
 * Options for {@link verify}.
 *
 * @category integrity
 */
export interface VerifyOptions {
  /**
   * The manifest file, used as the `path` of errors (default: the manifest's
   * `location.file`, else the resolved `dir`).
   */
  readonly manifestPath?: string | undefined
  /**
   * Verify for a spawn: with a declared `checksumSha256`, return the path of a host-private,
   * read-only copy holding exactly the bytes that were hashed, so a file swapped between the
   * check and the spawn never runs (see `internal/verifiedExecutable.ts`). Default `false`: the
   * resolved executable, hashed by path (discovery, the CLI).
   */
  readonly forSpawn?: boolean | undefined
}

/** Checks every `checksums` entry, in place, each through one descriptor. */
const verifyFiles = (
  checksums: Readonly<Record<string, string>>,
  dir: string,
  executable: string,
  errorPath: string,
  path: Path.Path
): Effect.Effect<void, ManifestError> =>
  Effect.forEach(Object.entries(checksums), ([name, digest]) => {
    const file = path.resolve(dir, name)
    const declared = digest.toLowerCase()
    return VerifiedExecutable.hashInPlace(file).pipe(
      Effect.mapError((failure) =>
        new ManifestError({
          path: errorPath,
          reason: new ExecutableMissing({ executable: file, detail: `(declared in \`checksums\`) ${failure.detail}` })
        })
      ),
      Effect.flatMap((actual) =>
        actual === declared ? Effect.void : fail(errorPath, new ChecksumMismatch({ executable, file, declared, actual }))
      )
    )
  }, { discard: true })

/** Hashes the executable from one descriptor into the verified cache; the copy is what runs. */
const verifiedCopy = (executable: string, declared: string, errorPath: string): Effect.Effect<string, ManifestError> =>
  VerifiedExecutable.materialize(executable, declared).pipe(
    Effect.mapError((failure) =>
      new ManifestError({
        path: errorPath,
        reason: failure._tag === "Mismatch"
          ? new ChecksumMismatch({ executable, declared, actual: failure.actual })
          : new ExecutableMissing({
            executable,
            detail: failure.file === executable ? failure.detail : `cannot be run from the verified cache: ${failure.file} ${failure.detail}`
          })
      })
    )
  )

/**
 * Resolves the manifest's executable against `dir` (an absolute executable is kept), checks
 * that it is a regular file and, when `checksumSha256` is declared, that its SHA-256 matches
 * (case-insensitively); every file in `checksums` (resolved against `dir`) must match too, or
 * the failure is a `ChecksumMismatch` naming it. The files are hashed on every call, so a file
 * replaced after discovery is caught before the next spawn. Returns the absolute executable
 * path, or with `forSpawn` the path of its verified copy.
 *
 * @category integrity
 */
export const verify = Effect.fn("PluginManifest.verify")(function*(
  manifest: {
    readonly executable: string
    readonly checksumSha256?: string | undefined
    readonly checksums?: Readonly<Record<string, string>> | undefined
    readonly location?: Location | undefined
  },
  dir: string,
  options?: VerifyOptions
): Effect.fn.Return<string, ManifestError, FileSystem.FileSystem | Path.Path> {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const executable = path.resolve(dir, manifest.executable)
  const errorPath = options?.manifestPath ?? manifest.location?.file ?? path.resolve(dir)
  const info = yield* fs.stat(executable).pipe(
    Effect.catch((error) =>
      fail(
        errorPath,
        new ExecutableMissing(
          isNotFound(error) ? { executable } : { executable, detail: `cannot be inspected: ${error.message}` }
        )
      )
    )
  )
  if (info.type !== "File") {
    return yield* fail(
      errorPath,
      new ExecutableMissing({ executable, detail: `is not a regular file (${info.type.toLowerCase()})` })
    )
  }
  if (manifest.checksums !== undefined) yield* verifyFiles(manifest.checksums, dir, executable, errorPath, path)
  if (manifest.checksumSha256 !== undefined) {
    const declared = manifest.checksumSha256.toLowerCase()
    if (options?.forSpawn === true) return yield* verifiedCopy(executable, declared, errorPath)
    const actual = yield* checksum(executable).pipe(
      Effect.catch((error) =>
        fail(errorPath, new ExecutableMissing({ executable, detail: `cannot be read: ${error.message}` }))
      )
    )
    if (actual !== declared) return yield* fail(errorPath, new ChecksumMismatch({ executable, declared, actual }))
  }
  return executable
})

// ---------------------------------------------------------------------------------------------
// discovery
// ---------------------------------------------------------------------------------------------

/**
 * A usable manifest found by {@link discover}: `dir` is its folder and `executablePath` the
 * verified absolute executable. The `manifest` carries its `location` too, so it can be handed
 * to a client, the manager or the router as it is.
 *
 * @category discovery
 */
export class DiscoveredValid extends Schema.TaggedClass<DiscoveredValid>("DiscoveredValid")("Valid", {
  path: Schema.String,
  dir: Schema.String,
  manifest: PluginManifest,
  executablePath: Schema.String
}) {}

/**
 * A manifest file found by {@link discover} that cannot be used, and why.
 *
 * @category discovery
 */
export class DiscoveredRejected extends Schema.TaggedClass<DiscoveredRejected>("DiscoveredRejected")("Rejected", {
  path: Schema.String,
  error: ManifestError
}) {}

/**
 * The outcome for one manifest file: `Valid` or `Rejected`.
 *
 * @category discovery
 */
export const Discovered = Schema.Union([DiscoveredValid, DiscoveredRejected])
export type Discovered = DiscoveredValid | DiscoveredRejected

/** Project files that share the manifest extensions but are never manifests. */
const notManifests = new Set(["package.json", "package-lock.json", "Cargo.toml", "pyproject.toml"])

/**
 * Whether a file name is treated as a manifest by {@link discover}: `*.toml` or `*.json`, not
 * hidden (`.`-prefixed), and not a well-known project file (`package.json`,
 * `package-lock.json`, `tsconfig*.json`, `Cargo.toml`, `pyproject.toml`).
 *
 * @category discovery
 */
export const isManifestFileName = (fileName: string): boolean =>
  (fileName.endsWith(".toml") || fileName.endsWith(".json")) &&
  !fileName.startsWith(".") &&
  !notManifests.has(fileName) &&
  !(fileName.startsWith("tsconfig") && fileName.endsWith(".json"))

/**
 * Finds every manifest file directly in `dir` and in its immediate subdirectories (for
 * example `plugins/echo/echo.toml`), loads and {@link verify}s each, and returns one outcome
 * per file, sorted by path (paths are absolute). A bad manifest is a `Rejected` outcome next to
 * the good ones; hidden entries are skipped. An existing folder without manifests gives an
 * empty list; a missing `dir` fails with a `ManifestError` whose reason is
 * `NotFound { directory: true }` and whose `path` is the folder (a typo in a folder name is
 * then an error, not a host with no plugins). A folder that exists but cannot be listed is
 * logged and gives an empty list. A manifest with a `[remote]` table is loaded but not
 * verified: its executable runs on the instances' machines, not here.
 *
 * @category discovery
 */
export const discover = Effect.fn("PluginManifest.discover")(function*(
  dir: string
): Effect.fn.Return<ReadonlyArray<Discovered>, ManifestError, FileSystem.FileSystem | Path.Path> {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const root = path.resolve(dir)
  const rootExists = yield* fs.exists(root).pipe(Effect.orElseSucceed(() => true))
  if (!rootExists) return yield* fail(root, new NotFound({ directory: true }))

  const list = (folder: string) =>
    fs.readDirectory(folder).pipe(
      Effect.map((names) => names.filter((name) => !name.startsWith(".")).sort()),
      Effect.catch((error) =>
        isNotFound(error)
          ? Effect.succeed([])
          : Effect.logWarning(`cannot list plugin folder ${folder}: ${error.message}`).pipe(Effect.as([]))
      )
    )
  const typeOf = (file: string) =>
    fs.stat(file).pipe(
      Effect.map((info) => info.type),
      Effect.orElseSucceed(() => "Unknown" as const)
    )

  const files: Array<string> = []
  for (const name of yield* list(root)) {
    const entry = path.join(root, name)
    if ((yield* typeOf(entry)) === "Directory") {
      for (const inner of yield* list(entry)) {
        const file = path.join(entry, inner)
        if (isManifestFileName(inner) && (yield* typeOf(file)) !== "Directory") files.push(file)
      }
    } else if (isManifestFileName(name)) {
      files.push(entry)
    }
  }
  files.sort()

  return yield* Effect.forEach(files, (file) => {
    const folder = path.dirname(file)
    return load(file).pipe(
      Effect.flatMap((manifest) =>
        // A remote plugin's executable is what its instances run, on their machines: not looked for here.
        (manifest.remote === undefined ? verify(manifest, folder, { manifestPath: file }) : Effect.succeed(path.resolve(folder, manifest.executable))).pipe(
          Effect.map((executablePath) => new DiscoveredValid({ path: file, dir: folder, manifest, executablePath }))
        )
      ),
      Effect.catch((error): Effect.Effect<Discovered> => Effect.succeed(new DiscoveredRejected({ path: file, error })))
    )
  }, { concurrency: 4 })
})
