/**
 * The one failure `plugin-host` commands end with: a message for stderr and the exit code.
 *
 * Exit codes: `0` done, `1` the operation failed (a plugin error, a failed plugin in `doctor`),
 * `2` bad arguments (with a usage message), `130` interrupted.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * A command failed; `message` goes to stderr and the process exits with `exitCode`.
 *
 * @category errors
 */
export class CliFailure extends Schema.TaggedError<CliFailure>()("CliFailure", {
  message: Schema.String,
  exitCode: Schema.Int
}) {}

/**
 * Exit codes of the command.
 *
 * @category constants
 */
export const ExitCode = {
  Ok: 0,
  Failed: 1,
  Usage: 2,
  Interrupted: 130
} as const
