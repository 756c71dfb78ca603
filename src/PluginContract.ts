/**
 * A contract: the typed methods a plugin serves, declared once and shared by host and plugin
 * (as Effect's `RpcGroup` is shared by an RPC client and server).
 *
 * ```ts
 * // contract.ts, imported by both sides
 * export const Secrets = PluginContract.make(GetSecret, ListSecrets)
 *
 * // the plugin: every method must have an implementation (a missing one is a type error)
 * PluginWorker.main({ handlers: PluginWorker.implement(Secrets, { "secret_source.get": …, "secret_source.list": … }) })
 *
 * // the host: a typed view of a plugin client, one function per method
 * const secrets = PluginContract.client(Secrets, client)
 * const { value } = yield* secrets["secret_source.get"]({ key: "db" })
 * ```
 *
 * {@link toJsonSchema} exports the wire form of a contract as JSON Schema, for plugins written in
 * other languages.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as JsonSchema from "effect/JsonSchema"
import * as Schema from "effect/Schema"
import type * as PluginClientError from "./PluginClientError.ts"
import type * as PluginMethod from "./PluginMethod.ts"
import type * as RpcPeer from "./RpcPeer.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * The methods of a plugin, by name.
 *
 * @category models
 */
export interface PluginContract<Methods extends PluginMethod.Any> {
  readonly methods: ReadonlyArray<Methods>
}

/**
 * The decoded params of a method.
 *
 * @category models
 */
export type Params<M> = M extends PluginMethod.PluginMethod<infer P, infer _R, infer _PW, infer _RW, infer _N> ? P : never

/**
 * The decoded result of a method.
 *
 * @category models
 */
export type Result<M> = M extends PluginMethod.PluginMethod<infer _P, infer R, infer _PW, infer _RW, infer _N> ? R : never

/**
 * The method of `Methods` called `Name`.
 *
 * @category models
 */
export type Named<Methods extends PluginMethod.Any, Name extends string> = Extract<Methods, { readonly name: Name }>

/**
 * The methods of a contract.
 *
 * @category models
 */
export type Methods<C> = C extends PluginContract<infer M> ? M : never

/**
 * What calls a typed method: a `PluginClient` (a `PluginManager` gives one with `get(id)`).
 *
 * @category models
 */
export interface Caller {
  readonly call: <P, R, PW, RW>(
    method: PluginMethod.PluginMethod<P, R, PW, RW>,
    params: P,
    options?: RpcPeer.CallOptions
  ) => Effect.Effect<R, PluginClientError.PluginClientError>
}

/**
 * The host's typed view of a contract: one function per method, by name.
 *
 * @category models
 */
export type Client<Methods extends PluginMethod.Any> = {
  readonly [Name in Methods["name"]]: (
    params: Params<Named<Methods, Name>>,
    options?: RpcPeer.CallOptions
  ) => Effect.Effect<Result<Named<Methods, Name>>, PluginClientError.PluginClientError>
}

/**
 * The JSON Schemas of a contract's wire form: for each method, what its params and result look
 * like as JSON.
 *
 * @category models
 */
export interface JsonSchemaExport {
  readonly methods: Readonly<Record<string, {
    readonly params: JsonSchema.JsonSchema
    readonly result: JsonSchema.JsonSchema
  }>>
}

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

/**
 * Groups methods into a contract. Two methods with the same name are a programming error: it
 * throws at once (when the module declaring the contract loads), not at the first call.
 *
 * @category constructors
 */
export const make = <const Methods extends ReadonlyArray<PluginMethod.Any>>(
  ...methods: Methods
): PluginContract<Methods[number]> => {
  const seen = new Set<string>()
  for (const method of methods) {
    if (seen.has(method.name)) throw new Error(`PluginContract.make: method \`${method.name}\` is declared twice`)
    seen.add(method.name)
  }
  return { methods }
}

// ---------------------------------------------------------------------------------------------
// host side
// ---------------------------------------------------------------------------------------------

/**
 * A typed view of a plugin client: `view[name](params, options?)` is
 * `caller.call(method, params, options)`: params encoded and result decoded with the method's
 * Schemas, failing with the client's `PluginClientError`.
 *
 * @category host
 */
export const client = <Methods extends PluginMethod.Any>(
  contract: PluginContract<Methods>,
  caller: Caller
): Client<Methods> => {
  const view: Record<string, (params: unknown, options?: RpcPeer.CallOptions) => Effect.Effect<unknown, PluginClientError.PluginClientError>> = {}
  for (const method of contract.methods) view[method.name] = (params, options) => caller.call(method, params, options)
  // The loop above gives every method of the contract its function under its own name, which is
  // what `Client` says; TypeScript cannot follow a mapped type built key by key.
  return view as Client<Methods>
}

// ---------------------------------------------------------------------------------------------
// JSON Schema
// ---------------------------------------------------------------------------------------------

/** One Schema's wire form as a self-contained JSON Schema (draft 2020-12, its `$defs` inline). */
const wireSchema = (schema: Schema.Constraint): JsonSchema.JsonSchema => {
  const document = Schema.toJsonSchemaDocument(schema)
  const definitions = Object.keys(document.definitions).length === 0 ? {} : { $defs: document.definitions }
  return { $schema: JsonSchema.META_SCHEMA_URI_DRAFT_2020_12, ...document.schema, ...definitions }
}

/**
 * The contract's wire form as JSON Schema (draft 2020-12), for plugins in other languages:
 * `{methods: {<name>: {params, result}}}`, each a self-contained schema of the JSON that travels
 * (the encoded side of the method's Schemas; a `NumberFromString` param is a string). It is made
 * by Effect's `Schema.toJsonSchemaDocument` and is as exact as it is: checks JSON Schema cannot
 * express are left to the Schema, which stays the final judge on both sides. It describes
 * Effect's canonical JSON form, which spells non-finite numbers as strings: a `Schema.Number`
 * admits "NaN" and "Infinity" there, which this library's wire never sends; declare numbers
 * `Schema.Finite` (or `Int`) for an exact `{"type": "number"}`.
 *
 * @category JSON Schema
 */
export const toJsonSchema = <Methods extends PluginMethod.Any>(contract: PluginContract<Methods>): JsonSchemaExport => {
  const methods: Record<string, JsonSchemaExport["methods"][string]> = {}
  for (const method of contract.methods) {
    methods[method.name] = { params: wireSchema(method.params), result: wireSchema(method.result) }
  }
  return { methods }
}
