/**
 * JSON Schemas for manifest files, for editors and CI linters.
 *
 * This module owns the two JSON Schema documents describing the manifest file formats read by
 * `PluginManifest.load`: JSON manifests (camelCase keys, `plugin-manifest.schema.json`) and
 * TOML manifests (snake_case keys, `plugin-manifest.toml.schema.json`). Both are generated from
 * the field Schemas of `PluginManifest` with `Schema.toJsonSchemaDocument`, so the rules
 * (patterns, ranges, required keys, no unknown keys) are the loader's own; this module adds the
 * key spelling of each format, a description of every key, and the document's `$id` and
 * `title`. The files checked in at the package root are {@link render}'s output, and a test
 * keeps them equal to it.
 *
 * The documents are for preliminary validation: the loader stays the final authority (for
 * example, duplicate poller kinds are only caught by it).
 *
 * @since 0.1.0
 */
import type * as JsonSchema from "effect/JsonSchema"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import * as PluginManifest from "./PluginManifest.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * A manifest file format: `json` (camelCase keys) or `toml` (snake_case keys).
 *
 * @category models
 */
export type Format = "json" | "toml"

/**
 * The file name of each format's schema, at the package root and in the package's `exports`.
 *
 * @category constants
 */
export const fileNames: Readonly<Record<Format, string>> = {
  json: "plugin-manifest.schema.json",
  toml: "plugin-manifest.toml.schema.json"
}

/**
 * The `$id` of each format's schema: where the published package serves the file.
 *
 * @category constants
 */
export const ids: Readonly<Record<Format, string>> = {
  json: `https://unpkg.com/effect-plugin-host/${fileNames.json}`,
  toml: `https://unpkg.com/effect-plugin-host/${fileNames.toml}`
}

// ---------------------------------------------------------------------------------------------
// fields, in the JSON spelling
// ---------------------------------------------------------------------------------------------

const isRegExpPayload = (payload: unknown): payload is { readonly source: string; readonly flags: string } =>
  typeof payload === "object" && payload !== null && "source" in payload && typeof payload.source === "string" &&
  "flags" in payload && typeof payload.flags === "string"

/**
 * The schema with each of its RegExp checks repeated with the `u` flag. JSON Schema receives a
 * `pattern` only from Unicode RegExps, and the manifest's patterns (plain ASCII classes) mean
 * the same with or without it, so the copy exports the rule without changing it.
 */
const exportPatterns = <S extends Schema.Top & { readonly Type: string }>(schema: S) => {
  const unicode: Array<SchemaAST.Check<string>> = []
  for (const check of schema.ast.checks ?? []) {
    const representation = check.annotations?.representation
    if (representation?.id !== "effect/schema/isPattern" || !isRegExpPayload(representation.payload)) continue
    const { flags, source } = representation.payload
    if (!flags.includes("u")) unicode.push(Schema.isPattern(new RegExp(source, `${flags}u`)))
  }
  const [first, ...rest] = unicode
  return first === undefined ? schema : schema.check(first, ...rest)
}

const Strings = Schema.Array(Schema.String)
const EnvVarNames = Schema.Array(exportPatterns(PluginManifest.EnvVarName))
const Kinds = Schema.Array(exportPatterns(PluginManifest.Kind)).check(Schema.isMinLength(1))

interface Field {
  readonly schema: Schema.Top
  readonly optional: boolean
  readonly description: string
}

const required = (schema: Schema.Top, description: string): Field => ({ schema, optional: false, description })
const optional = (schema: Schema.Top, description: string): Field => ({ schema, optional: true, description })

/** The `[poller]` section, keys in the JSON spelling (the TOML one is derived). */
const pollerFields: Readonly<Record<string, Field>> = {
  kinds: required(
    Kinds,
    "The poller kinds this plugin serves (at least one, no duplicates); a kind is a lowercase letter followed by one or more of a-z, 0-9 and `_`. A kind may be served by one plugin only."
  ),
  brokerTopicPrefix: optional(
    PluginManifest.BrokerTopicPrefix,
    "Long-lived pollers over a broker: the subject prefix the host sends ticks to (`<prefix>.tick`). Not empty, no trailing `.`, no whitespace."
  ),
  lifecycle: required(
    PluginManifest.Lifecycle,
    "`ephemeral`: one process per tick (one request line in, one reply line out). `long_lived`: one process serving every tick, over stdio or a broker."
  ),
  maxConcurrentTicks: optional(
    PluginManifest.MaxConcurrentTicks,
    "How many ticks of this poller may run at once, from 1 to 64 (default 1)."
  ),
  tickTimeoutSecs: optional(
    PluginManifest.TickTimeoutSecs,
    "How long one tick may take, in seconds, from 1 to 3600 (default 60)."
  )
}

/** The `[remote]` section, keys in the JSON spelling (the TOML one is derived). */
const remoteFields: Readonly<Record<string, Field>> = {
  subjectPrefix: required(
    PluginManifest.BrokerTopicPrefix,
    "The subject prefix the plugin's instances serve (`<prefix>.call`, `<prefix>.tick`…). Not empty, no trailing `.`, no whitespace."
  ),
  service: optional(
    exportPatterns(PluginManifest.ServiceName),
    "The NATS service name its instances register (letters, digits, `-` and `_`; default the plugin's name)."
  ),
  servers: optional(
    Schema.Array(PluginManifest.NonEmptyText).check(Schema.isMinLength(1)),
    "The NATS servers (`host:port` or `nats://host:port`); default the `server_set`, else the servers the host is configured with."
  ),
  serverSet: optional(
    exportPatterns(PluginManifest.ServerSet),
    "A named set of NATS servers the host is configured with (`PLUGIN_HOST_NATS_SERVERS_<NAME>`, comma-separated), used when `servers` is absent."
  ),
  idempotent: optional(
    Strings,
    "Methods that may run twice: only these are sent again when no instance answers or the one serving a call is lost (default none)."
  ),
  minInstances: optional(
    PluginManifest.MinInstances,
    "Below this many instances the plugin is degraded; at zero it is failed (default 1)."
  )
}

/** The `[discovery]` section, keys alike in both spellings. */
const discoveryFields: Readonly<Record<string, Field>> = {
  tools: optional(
    exportPatterns(PluginManifest.MethodName),
    "The method answering the plugin's tools (`{tools: [{name, description?, inputSchema?}…]}` or `[name…]`), e.g. `tools/list`. Without it, the tools are the methods the handshake announced."
  ),
  resources: optional(
    exportPatterns(PluginManifest.MethodName),
    "The method answering the plugin's resources (`{resources: [{uri|name, mimeType?}…]}` or `[uri…]`), e.g. `resources/list`."
  )
}

/** The sections (nested tables), each with its fields. */
const sectionFields: Readonly<Record<string, Readonly<Record<string, Field>>>> = {
  poller: pollerFields,
  discovery: discoveryFields,
  remote: remoteFields
}

/** The top-level keys, in the JSON spelling (the TOML one is derived). */
const manifestFields = (sections: Readonly<Record<string, Schema.Top>>): Readonly<Record<string, Field>> => ({
  name: required(
    exportPatterns(PluginManifest.Name),
    "The plugin name: a lowercase letter, then a-z, 0-9, `_`, `.` or `-`. The manifest's file name must be `<name>.toml`/`<name>.json` or end with `-<name>`."
  ),
  version: required(PluginManifest.NonEmptyText, "The plugin's version (free text, not empty), shown in diagnostics."),
  executable: required(
    PluginManifest.NonEmptyText,
    "The program to run: a path relative to the manifest's folder, or absolute. It is started directly (never through a shell), so a script needs a shebang and the executable bit."
  ),
  args: optional(Strings, "Fixed arguments passed to the executable (default: none)."),
  allowedEnvVars: optional(
    EnvVarNames,
    "The host environment variables the plugin may see (default: none); every other variable is withheld. Names are letters, digits and `_`. Without `PATH`, the interpreter of a `#!/usr/bin/env` script is resolved on the host's PATH."
  ),
  unsafeEnvVars: optional(
    EnvVarNames,
    "Loader and interpreter-injection variables (`LD_*`, `DYLD_*`, `NODE_OPTIONS`, `PYTHONPATH`, `BASH_ENV`, `PERL5OPT`, `RUBYOPT`…) the plugin may deliberately be passed; they must also be allow-listed. Without this mark such a name is refused at load."
  ),
  checksumSha256: optional(
    exportPatterns(PluginManifest.ChecksumSha256),
    "The SHA-256 of the executable (64 hex digits, either case), checked at discovery and before every start. `plugin-host checksum --write MANIFEST` rewrites it after the executable changes."
  ),
  checksums: optional(
    Schema.Record(PluginManifest.NonEmptyText, exportPatterns(PluginManifest.ChecksumSha256)),
    "SHA-256 digests of other files that decide what the plugin does (the script an interpreter runs, a file it loads): path relative to the manifest's folder (or absolute) → 64 hex digits. Each is hashed in place before every start; a mismatch refuses the start naming the file."
  ),
  poller: optional(sections.poller ?? Schema.Never, "Present when the plugin serves poller ticks."),
  framing: optional(
    PluginManifest.Framing,
    "How messages are delimited on the plugin's stdin and stdout: `ndjson`, one JSON-RPC message per line, or `content-length`, LSP's base protocol (`Content-Length: N` header, blank line, N bytes of UTF-8 JSON), to host a language server. Default: the host's lifetime policy (`ndjson` unless PLUGIN_HOST_FRAMING says otherwise)."
  ),
  cancellation: optional(
    PluginManifest.Cancellation,
    "What the host sends when it gives up a call (a timeout, an interrupted caller): `lsp` (`$/cancelRequest {id}`), `mcp` (`notifications/cancelled {requestId, reason}`) or `none`. Also where a call's progress token goes (`lsp`: `workDoneToken`, else `_meta.progressToken`). Default: the host's lifetime policy (`none` unless PLUGIN_HOST_CANCELLATION says otherwise)."
  ),
  discovery: optional(
    sections.discovery ?? Schema.Never,
    "The methods listing the plugin's tools and resources; `plugin-host doctor` runs discovery for a plugin that declares them and shows what it found."
  ),
  remote: optional(
    sections.remote ?? Schema.Never,
    "Present when the plugin runs on other machines as a NATS service: the host calls its instances instead of spawning `executable` (the worker program they run)."
  )
})

// ---------------------------------------------------------------------------------------------
// key spelling
// ---------------------------------------------------------------------------------------------

/** `allowedEnvVars` → `allowed_env_vars`, `checksumSha256` → `checksum_sha256`. */
const snakeCase = (key: string): string => key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)

/**
 * A manifest key in the spelling of `format`: TOML manifests use snake_case
 * (`allowed_env_vars`, `tick_timeout_secs`), JSON manifests the camelCase field names.
 *
 * @category naming
 */
export const keyOf = (key: string, format: Format): string => format === "toml" ? snakeCase(key) : key

const structOf = (fields: Readonly<Record<string, Field>>, format: Format) =>
  Schema.Struct(Object.fromEntries(
    Object.entries(fields).map(([key, field]) => [keyOf(key, format), field.optional ? Schema.optionalKey(field.schema) : field.schema])
  ))

const descriptionsOf = (fields: Readonly<Record<string, Field>>, format: Format): Record<string, string> =>
  Object.fromEntries(Object.entries(fields).map(([key, field]) => [keyOf(key, format), field.description]))

// ---------------------------------------------------------------------------------------------
// documents
// ---------------------------------------------------------------------------------------------

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The object schema with a `description` on each of its properties. */
const describeProperties = (schema: JsonSchema.JsonSchema, descriptions: Record<string, string>): JsonSchema.JsonSchema => {
  const properties = schema.properties
  if (!isObject(properties)) return schema
  return {
    ...schema,
    properties: Object.fromEntries(Object.entries(properties).map(([key, property]) => {
      const description = descriptions[key]
      return [key, isObject(property) && description !== undefined ? { ...property, description } : property]
    }))
  }
}

const titles: Readonly<Record<Format, string>> = {
  json: "effect-plugin-host plugin manifest (JSON)",
  toml: "effect-plugin-host plugin manifest (TOML)"
}

const summaries: Readonly<Record<Format, string>> = {
  json:
    "A plugin manifest in JSON (camelCase keys), as read by PluginManifest.load: what the plugin is, where its executable lives and how it may be run. Unknown keys are rejected.",
  toml:
    "A plugin manifest in TOML (snake_case keys, the poller settings in a [poller] table, the discovery methods in a [discovery] table, a remote plugin's in a [remote] table), as read by PluginManifest.load: what the plugin is, where its executable lives and how it may be run. Unknown keys are rejected. Editors such as Taplo pick this schema up from a `#:schema <url>` comment on the first line."
}

/** JSON manifests may name their schema for editors; the loader ignores the key. */
const schemaReference = {
  type: "string",
  description: "Where editors find this schema, e.g. `./node_modules/effect-plugin-host/plugin-manifest.schema.json`; ignored by the loader."
}

/**
 * The JSON Schema (draft 2020-12) of a manifest file in `format`: `additionalProperties: false`
 * at every level, a description on every property, `$id` and `title`.
 *
 * @category documents
 */
export const document = (format: Format): JsonSchema.JsonSchema => {
  const sections = Object.fromEntries(Object.entries(sectionFields).map(([key, fields]) => [key, structOf(fields, format)]))
  const fields = manifestFields(sections)
  const generated = Schema.toJsonSchemaDocument(structOf(fields, format), { onExcessProperty: "error" })
  const root = describeProperties(generated.schema, descriptionsOf(fields, format))
  const properties = isObject(root.properties) ? root.properties : {}
  const described = Object.entries(sectionFields).flatMap(([key, section]) => {
    const sectionKey = keyOf(key, format)
    const sectionSchema = properties[sectionKey]
    return isObject(sectionSchema) ? [[sectionKey, describeProperties(sectionSchema, descriptionsOf(section, format))] as const] : []
  })
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $id: ids[format],
    title: titles[format],
    description: summaries[format],
    ...root,
    properties: {
      ...(format === "json" ? { $schema: schemaReference } : {}),
      ...properties,
      ...Object.fromEntries(described)
    },
    ...(Object.keys(generated.definitions).length === 0 ? {} : { $defs: generated.definitions })
  }
}

/**
 * The text of the schema file of `format` (2-space indented JSON, a final newline), as checked
 * in at the package root and printed by `plugin-host schema`.
 *
 * @category documents
 */
export const render = (format: Format): string => `${JSON.stringify(document(format), null, 2)}\n`
