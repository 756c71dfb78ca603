/**
 * What `plugin-host run` shows while it hosts plugins: on a terminal, a live table with one row
 * per plugin, redrawn every second; otherwise (a pipe, a log file) plain lines for each state
 * change, crash and restart. Also the shutdown signal `run` waits for, and the logger the
 * executable installs.
 *
 * On a terminal the table is drawn on stdout and owns the bottom of the screen: every redraw
 * moves the cursor back over the previous frame and erases to the end of the screen, so rows of
 * plugins that are gone disappear. Log lines never go through the table: while the table is
 * shown (and stderr is the terminal too), the {@link logger} hands each line to the view, which
 * erases the frame, prints the line where the frame was and draws the frame again below it.
 * With stderr redirected, logs go to stderr untouched. {@link renderFrame} is that redraw as a
 * pure function of the previous frame's height, the rows and the pending log lines.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import { formatDuration } from "../internal/formatDuration.ts"
import type * as PluginManager from "../PluginManager.ts"

// ---------------------------------------------------------------------------------------------
// signals
// ---------------------------------------------------------------------------------------------

/**
 * Completed by the first SIGINT/SIGTERM while `run` is hosting (see `main.ts`); `run` then
 * stops every plugin and exits 0.
 *
 * @category signals
 */
export const shutdownSignal = Effect.sync(() => signal.deferred)

const signal = { deferred: Deferred.makeUnsafe<void>(), waiting: false }

/**
 * Marks that a command is waiting for the shutdown signal, so {@link deliverSignal} completes it
 * instead of letting `main.ts` interrupt the command.
 *
 * @category signals
 */
export const waitForSignal = Effect.sync(() => {
  signal.waiting = true
})

/** Delivers SIGINT/SIGTERM to a waiting `run`; false when nothing is waiting. */
export const deliverSignal = (): boolean => {
  if (!signal.waiting) return false
  Deferred.doneUnsafe(signal.deferred, Effect.void)
  return true
}

// ---------------------------------------------------------------------------------------------
// frames
// ---------------------------------------------------------------------------------------------

const ESC = "\x1b["

/**
 * The bytes of one redraw: back to the start of the previous frame (`previousHeight` lines up;
 * the cursor sits on the line below a frame), erase to the end of the screen, the pending log
 * lines, then the rows, each cut to `columns - 1` characters (default 80 columns) so that no
 * row wraps (a wrapped row would make the next redraw move up too few lines). The new frame's
 * height is `rows.length`.
 *
 * @category frames
 */
export const renderFrame = (input: {
  readonly previousHeight: number
  readonly rows: ReadonlyArray<string>
  readonly logs: ReadonlyArray<string>
  readonly columns?: number | undefined
}): string => {
  // A terminal that reports no size (0 columns) is taken as the classic 80.
  const columns = input.columns === undefined || input.columns <= 0 ? 80 : input.columns
  const width = Math.max(10, columns - 1)
  const fit = (row: string) => row.length <= width ? row : `${row.slice(0, width - 1)}…`
  const erase = input.previousHeight > 0 ? `\r${ESC}${input.previousHeight}A${ESC}0J` : ""
  return erase + [...input.logs, ...input.rows.map(fit)].map((line) => `${line}\n`).join("")
}

/** The table on screen while `run` shows it on a terminal; `undefined` otherwise. */
let shown: { height: number; rows: ReadonlyArray<string> } | undefined

/** Whether a line for stderr must go through the table: the table is shown and stderr is the same terminal. */
const throughTable = (): boolean => shown !== undefined && process.stderr.isTTY === true

const draw = (rows: ReadonlyArray<string>, logs: ReadonlyArray<string>) => {
  if (shown === undefined) return
  process.stdout.write(renderFrame({ previousHeight: shown.height, rows, logs, columns: process.stdout.columns }))
  shown = { height: rows.length, rows }
}

// ---------------------------------------------------------------------------------------------
// logger
// ---------------------------------------------------------------------------------------------

const show = (value: unknown): string => typeof value === "string" ? value : JSON.stringify(value) ?? String(value)

/** One log entry as one line: level, annotations (`plugin=echo`), message, cause. */
const logLine = (options: Logger.Options<unknown>): string => {
  const annotations = Object.entries(options.fiber.getRef(References.CurrentLogAnnotations))
    .map(([key, value]) => `${key}=${show(value)}`)
  const parts = (Array.isArray(options.message) ? options.message : [options.message]).map(show)
  if (options.cause.reasons.length > 0) parts.push(Cause.pretty(options.cause))
  return `${options.logLevel.toUpperCase()}${annotations.length === 0 ? "" : ` ${annotations.join(" ")}`}: ${parts.join(" ")}`
}

/**
 * The executable's logger: Effect's default logger, except while the live table is on a
 * terminal that stderr also writes to, when each line is printed above the table (see the
 * module header).
 *
 * @category logger
 */
export const logger: Logger.Logger<unknown, void> = Logger.make((options) => {
  if (shown !== undefined && throughTable()) {
    draw(shown.rows, [logLine(options)])
  } else {
    Logger.defaultLogger.log(options)
  }
})

// ---------------------------------------------------------------------------------------------
// view
// ---------------------------------------------------------------------------------------------

const pad = (text: string, width: number) => text.length >= width ? text.slice(0, width) : text + " ".repeat(width - text.length)

/** One plugin's row of the live table. */
const rowOf = (d: PluginManager.Diagnostics): string => {
  const h = d.health
  // Whole seconds: a redraw every second should not flicker through milliseconds.
  const seconds = h.uptime === undefined ? undefined : Math.floor(Duration.toMillis(h.uptime) / 1000)
  const uptime = seconds === undefined ? "-" : seconds === 0 ? "0 s" : formatDuration(seconds * 1000)
  const error = h.lastError === undefined ? "" : `  last error: ${h.lastError.split("\n")[0]}`
  return `${pad(d.id, 18)} ${pad(h.state._tag, 11)} pid ${pad(String(h.pid ?? "-"), 8)} up ${pad(uptime, 10)} crashes ${h.totalCrashes}${error}`
}

/** A state change, crash or restart as a plain line (the view without a terminal). */
const eventLine = (event: PluginManager.ManagerEvent): string | undefined => {
  switch (event._tag) {
    case "WorkerCrashed":
      return `${event.id}: crashed (${event.reason})${event.willRestart ? ", restarting" : ", giving up"}`
    case "WorkerRestarted":
      return `${event.id}: restarted (pid ${event.pid})`
    case "Plugin":
      return event.event._tag === "StateChanged"
        ? `${event.id}: ${event.event.from._tag} → ${event.event.to._tag}`
        : event.event._tag === "Ready"
        ? `${event.id}: ready (pid ${event.event.pid})`
        : undefined
  }
}

/**
 * The live view over a manager, in the current Scope: `refresh` redraws the table (terminal
 * only), `onEvent` prints an event line (no terminal only), `say` prints a status message
 * (above the table on a terminal, on stderr otherwise). Closing the Scope leaves the last frame
 * on screen and hands logging back to the default logger.
 *
 * @category constructors
 */
export const make = (manager: PluginManager.PluginManager["Service"]) =>
  Effect.gen(function*() {
    yield* waitForSignal
    const tty = process.stdout.isTTY === true
    if (tty) {
      yield* Effect.acquireRelease(Effect.sync(() => {
        shown = { height: 0, rows: [] }
      }), () =>
        Effect.sync(() => {
          shown = undefined
        }))
    }
    const refresh = tty
      ? Effect.flatMap(manager.diagnostics, (rows) => Effect.sync(() => draw(rows.map(rowOf), [])))
      : Effect.void
    const onEvent = (event: PluginManager.ManagerEvent): Effect.Effect<void> => {
      if (tty) return Effect.void
      const line = eventLine(event)
      return line === undefined ? Effect.void : Console.log(line)
    }
    const say = (text: string): Effect.Effect<void> =>
      Effect.suspend(() => shown !== undefined && throughTable() ? Effect.sync(() => draw(shown?.rows ?? [], [text])) : Console.error(text))
    return { refresh, onEvent, say }
  })
