#!/usr/bin/env node
/**
 * The `plugin-host` executable: runs the root command with the process's arguments and turns
 * the outcome into an exit code (0 done or help shown, 1 failed, 2 bad arguments or settings,
 * 130 interrupted).
 *
 * Logs go to stderr (stdout carries results), at the level `PLUGIN_HOST_LOG_LEVEL` names (read
 * through Effect `Config`; default `warn`; an unknown level is a usage error), which the
 * built-in `--log-level` flag overrides. While `run` draws its live table on a terminal, log
 * lines go through the view, which prints them above the table (see `StatusView`).
 *
 * SIGINT/SIGTERM stop `run` gracefully (every plugin is stopped, exit 0); any other command is
 * interrupted, which closes its scopes and so stops the plugins it started.
 *
 * @since 0.1.0
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import * as SchemaGetter from "effect/SchemaGetter"
import * as SchemaIssue from "effect/SchemaIssue"
import { CliError, Command } from "effect/cli"
import { readFileSync } from "node:fs"
import * as PluginProcess from "../PluginProcess.ts"
import { CliFailure, ExitCode, fromConfigError } from "./CliFailure.ts"
import { root } from "./Commands.ts"
import * as StatusView from "./StatusView.ts"

/** The package's own version: `package.json` is two folders up from `src/cli` and `dist/cli` alike. */
const { version } = Schema.decodeUnknownSync(Schema.fromJsonString(Schema.Struct({ version: Schema.String })))(
  readFileSync(new URL("../../package.json", import.meta.url), "utf8")
)

/** The words `--log-level` accepts, so the variable and the flag take the same values. */
const levelWords: Readonly<Record<string, LogLevel.LogLevel>> = {
  all: "All",
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warn: "Warn",
  warning: "Warn",
  error: "Error",
  fatal: "Fatal",
  none: "None"
}

const LogLevelText = Schema.String.pipe(Schema.decodeTo(Schema.Literals(LogLevel.values), {
  decode: SchemaGetter.transformEffect((text: string) => {
    const level = levelWords[text.trim().toLowerCase()]
    return level === undefined
      ? Effect.fail(new SchemaIssue.InvalidValue({ message: `expected one of ${Object.keys(levelWords).join(", ")} (got ${JSON.stringify(text)})` }, text))
      : Effect.succeed(level)
  }),
  encode: SchemaGetter.transform((level: LogLevel.LogLevel) => level.toLowerCase())
}))

/** `PLUGIN_HOST_LOG_LEVEL`, default `warn`. */
const logLevel = Config.schema(LogLevelText, "PLUGIN_HOST_LOG_LEVEL").pipe(Config.withDefault<LogLevel.LogLevel>("Warn"))

const program = Effect.gen(function*() {
  const minimum = yield* logLevel.pipe(Effect.mapError(fromConfigError))
  yield* Command.run(root, { version }).pipe(Effect.provideService(References.MinimumLogLevel, minimum))
}).pipe(
  Effect.provide(Layer.mergeAll(
    NodeServices.layer,
    // Plugins are started with node:child_process directly (see PluginProcess.layerNode).
    PluginProcess.layerNode,
    Logger.layer([StatusView.logger]),
    Layer.succeed(Logger.LogToStderr, true)
  ))
)

/**
 * The exit code of an effect/cli error, all of them already rendered by `Command.run`: help
 * asked for is 0; help shown because of parse errors, and every other parse error, is 2; a
 * handler's `UserError` is 1.
 */
const cliExitCode = (error: CliError.CliError): number => {
  switch (error._tag) {
    case "ShowHelp":
      return error.errors.length > 0 ? ExitCode.Usage : ExitCode.Ok
    case "UserError":
      return ExitCode.Failed
    default:
      return ExitCode.Usage
  }
}

const exitCodeOf = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit)) return ExitCode.Ok
  if (Cause.hasInterruptsOnly(exit.cause)) return ExitCode.Interrupted
  const error = Cause.findErrorOption(exit.cause)
  if (error._tag === "Some") {
    const value = error.value
    if (value instanceof CliFailure) {
      process.stderr.write(`error: ${value.message}\n`)
      return value.exitCode
    }
    if (CliError.isCliError(value)) return cliExitCode(value)
  }
  process.stderr.write(`error: ${Cause.pretty(exit.cause)}\n`)
  return ExitCode.Failed
}

const fiber = Effect.runFork(program)
const onSignal = () => {
  if (!StatusView.deliverSignal()) fiber.interruptUnsafe(fiber.id)
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)
fiber.addObserver((exit) => {
  process.exit(exitCodeOf(exit))
})
