/**
 * The error of a NATS micro (ADR-32) service description that breaks the ADR's rules. Its own
 * module so that `PluginWorker` can export it (as `PluginWorker.InvalidService`) without loading
 * the responder (`natsMicro`, which re-exports it) and its `Broker`/`Stream` imports.
 *
 * @internal
 */
import * as Schema from "effect/Schema"

/**
 * The service description is not what ADR-32 allows (a name other than letters, digits, `-`
 * and `_`, a version that is not SemVer, an id that is not one subject token).
 */
export class InvalidService extends Schema.TaggedError<InvalidService>()("InvalidService", {
  field: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `invalid NATS service \`${this.field}\`: ${this.detail}`
  }
}
