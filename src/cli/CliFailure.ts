/**
 * The one failure `plugin-host` commands end with: a message for stderr and the exit code.
 *
 * Exit codes: `0` done, `1` the operation failed (a plugin error, a failed or disabled plugin in
 * `doctor`), `2` bad arguments or settings (a parse error with a usage message, a missing
 * `--dir`, an invalid `PLUGIN_HOST_*` variable), `130` interrupted.
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"

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

const issuesOf = SchemaIssue.makeFormatterStandardSchemaV1()

/**
 * An environment variable the command cannot use, as a usage failure naming the variable:
 * `invalid environment: PLUGIN_HOST_RESTART_CAP: restartCap must be an integer >= 1 (got 0)`.
 * The config path (`["PLUGIN_HOST", "RESTART_CAP"]`) joined with `_` is the variable's name.
 *
 * @category constructors
 */
export const fromConfigError = (error: Config.ConfigError): CliFailure => {
  const cause = error.cause
  const problems = Schema.isSchemaError(cause)
    ? issuesOf(cause.issue).issues.map((issue) => {
      const variable = (issue.path ?? []).map((segment) => String(typeof segment === "object" ? segment.key : segment)).join("_")
      return variable === "" ? issue.message : `${variable}: ${issue.message}`
    })
    : [cause.message]
  return new CliFailure({ message: `invalid environment: ${problems.join("; ")}`, exitCode: ExitCode.Usage })
}
