/**
 * The manifest JSON Schemas: the checked-in files are the generator's output (so they cannot
 * drift), they list exactly the keys the loader accepts in each format, and every bundled
 * example manifest validates against the TOML schema.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Toml from "effect/encoding/Toml"
import * as Result from "effect/Result"
import * as fs from "node:fs"
import * as path from "node:path"
import * as ManifestSchema from "../src/ManifestSchema.ts"
import * as PluginManifest from "../src/PluginManifest.ts"

const root = path.resolve(import.meta.dirname, "..")
const formats: ReadonlyArray<ManifestSchema.Format> = ["json", "toml"]

type Json = Readonly<Record<string, unknown>>

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

const objectAt = (value: unknown, key: string): Json => {
  const inner = isObject(value) ? value[key] : undefined
  assert.isTrue(isObject(inner), `expected an object at \`${key}\``)
  return isObject(inner) ? inner : {}
}

const stringsAt = (value: Json, key: string): ReadonlyArray<string> => {
  const inner = value[key]
  return Array.isArray(inner) ? inner.filter((item): item is string => typeof item === "string") : []
}

/**
 * The problems of `value` against the subset of JSON Schema the manifest schemas use: `type`,
 * `properties`, `required`, `additionalProperties: false`, `items`, `enum`, `pattern`,
 * `minLength`, `minItems`, `minimum`, `maximum`.
 */
const problemsOf = (schema: Json, value: unknown, at = "$"): Array<string> => {
  const problems: Array<string> = []
  const type = schema.type
  const typeOk = type === undefined ||
    (type === "object" && isObject(value)) ||
    (type === "array" && Array.isArray(value)) ||
    (type === "string" && typeof value === "string") ||
    (type === "number" && typeof value === "number") ||
    (type === "integer" && Number.isInteger(value))
  if (!typeOk) return [`${at}: expected ${String(type)}`]
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) problems.push(`${at}: not one of ${schema.enum.join(", ")}`)
  if (typeof value === "string") {
    if (typeof schema.pattern === "string" && !new RegExp(schema.pattern, "u").test(value)) problems.push(`${at}: does not match ${schema.pattern}`)
    if (typeof schema.minLength === "number" && value.length < schema.minLength) problems.push(`${at}: too short`)
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) problems.push(`${at}: below ${schema.minimum}`)
    if (typeof schema.maximum === "number" && value > schema.maximum) problems.push(`${at}: above ${schema.maximum}`)
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) problems.push(`${at}: too few items`)
    const items = schema.items
    if (isObject(items)) value.forEach((item, i) => problems.push(...problemsOf(items, item, `${at}[${i}]`)))
  }
  if (isObject(value)) {
    const properties = isObject(schema.properties) ? schema.properties : {}
    for (const key of stringsAt(schema, "required")) if (!(key in value)) problems.push(`${at}: missing key \`${key}\``)
    for (const [key, inner] of Object.entries(value)) {
      const property = properties[key]
      if (isObject(property)) problems.push(...problemsOf(property, inner, `${at}.${key}`))
      else if (schema.additionalProperties === false) problems.push(`${at}: unknown key \`${key}\``)
    }
  }
  return problems
}

/** A manifest using every key of `format`, with valid values. */
const fullManifest = (format: ManifestSchema.Format) => {
  const key = (name: string) => ManifestSchema.keyOf(name, format)
  return {
    ...(format === "json" ? { $schema: `./node_modules/effect-plugin-host/${ManifestSchema.fileNames.json}` } : {}),
    name: "full",
    version: "1.2.3",
    executable: "plugin.mjs",
    args: ["--flag"],
    [key("allowedEnvVars")]: ["PATH", "NODE_OPTIONS"],
    [key("unsafeEnvVars")]: ["NODE_OPTIONS"],
    [key("checksumSha256")]: "a".repeat(64),
    checksums: { "lib/helpers.mjs": "b".repeat(64) },
    framing: "content-length",
    cancellation: "lsp",
    discovery: { tools: "tools/list", resources: "resources/list" },
    poller: {
      kinds: ["rss", "atom"],
      [key("brokerTopicPrefix")]: "plugins.full",
      lifecycle: "long_lived",
      [key("maxConcurrentTicks")]: 4,
      [key("tickTimeoutSecs")]: 90
    },
    remote: {
      [key("subjectPrefix")]: "plugins.full",
      service: "full-svc",
      servers: ["nats://127.0.0.1:4222"],
      [key("serverSet")]: "main",
      idempotent: ["get"],
      [key("minInstances")]: 2
    }
  }
}

const tomlText = (manifest: ReturnType<typeof fullManifest>): string => {
  const { poller, ...top } = manifest
  const tomlValue = (value: unknown): string =>
    typeof value === "object" && value !== null && !Array.isArray(value)
      ? `{ ${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)} = ${JSON.stringify(v)}`).join(", ")} }`
      : JSON.stringify(value)
  const line = ([key, value]: readonly [string, unknown]) => `${key} = ${tomlValue(value)}`
  return [...Object.entries(top).map(line), "[poller]", ...Object.entries(poller).map(line)].join("\n")
}

const parseFull = (format: ManifestSchema.Format) => {
  const manifest = fullManifest(format)
  const text = format === "toml" ? tomlText(manifest) : JSON.stringify(manifest)
  return PluginManifest.parse(text, `/plugins/full.${format}`)
}

describe("ManifestSchema", () => {
  for (const format of formats) {
    it(`the checked-in ${ManifestSchema.fileNames[format]} is the generator's output`, () => {
      const file = fs.readFileSync(path.join(root, ManifestSchema.fileNames[format]), "utf8")
      const flag = format === "toml" ? " --toml" : ""
      assert.strictEqual(file, ManifestSchema.render(format), `regenerate it: npm start --silent -- schema${flag} > ${ManifestSchema.fileNames[format]}`)
    })

    it(`the ${format} schema has $id, title, a description on every property, and no additional properties at any level`, () => {
      const schema = ManifestSchema.document(format)
      assert.strictEqual(schema.$id, ManifestSchema.ids[format])
      assert.strictEqual(schema.$schema, "https://json-schema.org/draft/2020-12/schema")
      assert.isString(schema.title)
      const poller = objectAt(objectAt(schema, "properties"), "poller")
      const discovery = objectAt(objectAt(schema, "properties"), "discovery")
      for (const level of [schema, poller, discovery]) {
        assert.strictEqual(level.additionalProperties, false)
        for (const [key, property] of Object.entries(objectAt(level, "properties"))) {
          assert.isTrue(isObject(property) && typeof property.description === "string" && property.description.length > 20, key)
        }
      }
      assert.deepStrictEqual(stringsAt(schema, "required"), ["name", "version", "executable"])
      assert.deepStrictEqual(stringsAt(poller, "required"), ["kinds", "lifecycle"])
    })

    it.effect(`every ${format} key in the schema is one the loader accepts, and every manifest field has a key`, () =>
      Effect.gen(function*() {
        const schema = ManifestSchema.document(format)
        const manifest = fullManifest(format)
        assert.deepStrictEqual(problemsOf(schema, manifest), [])
        const properties = objectAt(schema, "properties")
        const pollerProperties = objectAt(objectAt(properties, "poller"), "properties")
        assert.sameMembers(Object.keys(properties), Object.keys(manifest))
        assert.sameMembers(Object.keys(pollerProperties), Object.keys(manifest.poller))
        // The model's fields, in the file's spelling (the file states the tick timeout in seconds).
        const fileKey = (field: string) => ManifestSchema.keyOf(field === "tickTimeout" ? "tickTimeoutSecs" : field, format)
        // JSON manifests may also name their schema (`$schema`), which is no manifest field.
        const fieldKeys = Object.keys(properties).filter((key) => key !== "$schema")
        assert.sameMembers(fieldKeys, Object.keys(PluginManifest.PluginManifest.fields).map(fileKey))
        assert.strictEqual(Object.keys(properties).includes("$schema"), format === "json")
        assert.sameMembers(Object.keys(pollerProperties), Object.keys(PluginManifest.PollerSection.fields).map(fileKey))
        const remoteProperties = objectAt(objectAt(properties, "remote"), "properties")
        assert.sameMembers(Object.keys(remoteProperties), Object.keys(manifest.remote))
        assert.sameMembers(Object.keys(remoteProperties), Object.keys(PluginManifest.RemoteSection.fields).map(fileKey))
        const parsed = yield* parseFull(format)
        assert.deepStrictEqual(parsed.allowedEnvVars, ["PATH", "NODE_OPTIONS"])
        assert.deepStrictEqual(parsed.unsafeEnvVars, ["NODE_OPTIONS"])
        assert.strictEqual(parsed.checksumSha256, "a".repeat(64))
        assert.deepStrictEqual(parsed.checksums, { "lib/helpers.mjs": "b".repeat(64) })
        assert.strictEqual(parsed.poller?.brokerTopicPrefix, "plugins.full")
        assert.strictEqual(parsed.poller?.maxConcurrentTicks, 4)
        assert.deepStrictEqual({ ...parsed.remote }, {
          subjectPrefix: "plugins.full",
          service: "full-svc",
          servers: ["nats://127.0.0.1:4222"],
          serverSet: "main",
          idempotent: ["get"],
          minInstances: 2
        })
        assert.strictEqual(parsed.framing, "content-length")
        assert.strictEqual(parsed.cancellation, "lsp")
        assert.deepStrictEqual(parsed.discovery, { tools: "tools/list", resources: "resources/list" })
      }))
  }

  it("the TOML schema rejects what the loader rejects: a camelCase key, a bad name, a missing key", () => {
    const schema = ManifestSchema.document("toml")
    const valid = fullManifest("toml")
    assert.deepStrictEqual(problemsOf(schema, { ...valid, allowedEnvVars: ["PATH"] }), ["$: unknown key `allowedEnvVars`"])
    assert.deepStrictEqual(problemsOf(schema, { ...valid, name: "Full" }), ["$.name: does not match ^[a-z][a-z0-9_.-]*$"])
    assert.deepStrictEqual(problemsOf(schema, { ...valid, poller: { kinds: ["rss"] } }), ["$.poller: missing key `lifecycle`"])
    assert.deepStrictEqual(problemsOf(schema, { ...valid, poller: { ...valid.poller, max_concurrent_ticks: 65 } }), ["$.poller.max_concurrent_ticks: above 64"])
  })

  it("every example manifest under examples/plugins validates against the TOML schema", () => {
    const schema = ManifestSchema.document("toml")
    const pluginsDir = path.join(root, "examples/plugins")
    const manifests = fs.readdirSync(pluginsDir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).flatMap((entry) =>
      fs.readdirSync(path.join(pluginsDir, entry.name)).filter((file) => file.endsWith(".toml")).map((file) => path.join(pluginsDir, entry.name, file))
    )
    assert.isAtLeast(manifests.length, 5)
    for (const file of manifests) {
      const parsed = Toml.parse(fs.readFileSync(file, "utf8"))
      assert.isTrue(Result.isSuccess(parsed), file)
      if (Result.isSuccess(parsed)) assert.deepStrictEqual(problemsOf(schema, parsed.success), [], file)
    }
  })
})
