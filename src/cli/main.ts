#!/usr/bin/env node
/**
 * The `plugin-host` executable: runs the root command with the process's arguments and turns
 * the outcome into an exit code (0 done, 1 failed, 2 bad arguments, 130 interrupted).
 *
 * SIGINT/SIGTERM stop `run` gracefully (every plugin is stopped, exit 0); any other command is
 * interrupted, which closes its scopes and so stops the plugins it started.
 *
 * @since 0.1.0
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import { Command } from "effect/cli"
import * as PluginProcess from "../PluginProcess.ts"
import { CliFailure, ExitCode } from "./CliFailure.ts"
import { root } from "./Commands.ts"
import * as StatusView from "./StatusView.ts"

const version = "0.1.0"

/** Logs go to stderr (stdout carries results), warnings and up unless PLUGIN_HOST_LOG_LEVEL says otherwise. */
const logLevel = (): "Debug" | "Info" | "Warn" | "Error" => {
  const wanted = process.env.PLUGIN_HOST_LOG_LEVEL?.toLowerCase()
  return wanted === "debug" ? "Debug" : wanted === "info" ? "Info" : wanted === "error" ? "Error" : "Warn"
}

const program = Command.run(root, { version }).pipe(
  Effect.provide(Layer.mergeAll(
    NodeServices.layer,
    // Plugins are started with node:child_process directly (see PluginProcess.layerNode).
    PluginProcess.layerNode,
    Layer.succeed(Logger.LogToStderr, true),
    Layer.succeed(References.MinimumLogLevel, logLevel())
  ))
)

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
    if (typeof value === "object" && value !== null && "_tag" in value) {
      // Parse errors were already rendered with the usage text by Command.run.
      if (value._tag === "ShowHelp") {
        const errors: unknown = "errors" in value ? value.errors : undefined
        return Array.isArray(errors) && errors.length > 0 ? ExitCode.Usage : ExitCode.Ok
      }
      if (["UnrecognizedOption", "DuplicateOption", "MissingOption", "MissingArgument", "UnexpectedArgument", "InvalidValue", "UnknownSubcommand", "ValidationError"].includes(String(value._tag))) {
        return ExitCode.Usage
      }
    }
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
