/**
 * A typed plugin method: its name and the Schemas of its params and result.
 *
 * `PluginClient.call(method, params)` encodes the params with the method's params Schema
 * (failure: `InvalidParams`, nothing sent) and decodes the result with its result Schema
 * (failure: `UnexpectedPayload`), so a plugin returning the wrong shape is a typed error at the
 * boundary instead of an `undefined` deep inside the host.
 *
 * The worker serves the same declaration with `PluginWorker.handle(method, impl)`: params
 * decoded with the params Schema (failure: -32602 with the Schema's message), the result encoded
 * with the result Schema (failure: -32603). `PluginContract` groups methods so that host and
 * plugin share one declaration.
 *
 * @since 0.1.0
 */
import type * as Schema from "effect/Schema"

/**
 * A method with typed params and result. `Params`/`Result` are the decoded types, `ParamsWire`
 * /`ResultWire` what travels as JSON; `Name` is the method's name as a literal type when it was
 * declared with one, which lets a `PluginContract` key its methods by name.
 *
 * @category models
 */
export interface PluginMethod<Params, Result, ParamsWire = Params, ResultWire = Result, Name extends string = string> {
  readonly name: Name
  readonly params: Schema.Codec<Params, ParamsWire>
  readonly result: Schema.Codec<Result, ResultWire>
}

/**
 * Declares a typed method.
 *
 * ```ts
 * const GetSecret = PluginMethod.make("secret_source.get", {
 *   params: Schema.Struct({ key: Schema.String }),
 *   result: Schema.Struct({ value: Schema.String })
 * })
 * const { value } = yield* client.call(GetSecret, { key: "db" })
 * ```
 *
 * @category constructors
 */
export const make = <Params, Result, ParamsWire = Params, ResultWire = Result, const Name extends string = string>(
  name: Name,
  schemas: {
    readonly params: Schema.Codec<Params, ParamsWire>
    readonly result: Schema.Codec<Result, ResultWire>
  }
): PluginMethod<Params, Result, ParamsWire, ResultWire, Name> => ({ name, params: schemas.params, result: schemas.result })

/**
 * Any method, whatever its types: what a `PluginContract` holds.
 *
 * @category models
 */
export type Any = PluginMethod<unknown, unknown, unknown, unknown, string>
