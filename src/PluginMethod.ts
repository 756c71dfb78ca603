/**
 * A typed plugin method: its name and the Schemas of its params and result.
 *
 * `PluginClient.call(method, params)` encodes the params with the method's params Schema
 * (failure: `InvalidParams`, nothing sent) and decodes the result with its result Schema
 * (failure: `UnexpectedPayload`), so a plugin returning the wrong shape is a typed error at the
 * boundary instead of an `undefined` deep inside the host.
 *
 * @since 0.1.0
 */
import type * as Schema from "effect/Schema"

/**
 * A method with typed params and result. `Params`/`Result` are the decoded types, `ParamsWire`
 * /`ResultWire` what travels as JSON.
 *
 * @category models
 */
export interface PluginMethod<Params, Result, ParamsWire = Params, ResultWire = Result> {
  readonly name: string
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
export const make = <Params, Result, ParamsWire = Params, ResultWire = Result>(
  name: string,
  schemas: {
    readonly params: Schema.Codec<Params, ParamsWire>
    readonly result: Schema.Codec<Result, ResultWire>
  }
): PluginMethod<Params, Result, ParamsWire, ResultWire> => ({ name, params: schemas.params, result: schemas.result })
