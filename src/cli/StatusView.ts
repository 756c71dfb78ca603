/**
 * What `plugin-host run` shows while it hosts plugins: on a terminal, one live status line per
 * plugin, redrawn every second; otherwise (a pipe, a log file) plain lines for each state
 * change, crash and restart. Also the shutdown signal `run` waits for.
 *
 * @since 0.1.0
 */
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as PluginManager from "../PluginManager.ts"

/**
 * Completed by the first SIGINT/SIGTERM while `run` is hosting (see `main.ts`); `run` then
 * stops every plugin and exits 0.
 *
 * @category signals
 */
export const shutdownSignal = Effect.sync(() => signal.deferred)

const signal = { deferred: Deferred.makeUnsafe<void>(), waiting: false }

/**
 * Marks that a command is waiting for the shutdown signal, and returns a function that
 * delivers it (false when nothing waits, so the caller interrupts instead).
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

const pad = (text: string, width: number) => text.length >= width ? text.slice(0, width) : text + " ".repeat(width - text.length)

/**
 * The live view over a manager.
 *
 * @category constructors
 */
export const make = (manager: PluginManager.PluginManager["Service"]) =>
  Effect.gen(function*() {
    yield* waitForSignal
    const tty = process.stdout.isTTY === true
    let drawn = 0
    const refresh = tty
      ? Effect.gen(function*() {
        const rows = yield* manager.diagnostics
        const lines = rows.map((d) => {
          const h = d.health
          const uptime = h.uptime === undefined ? "-" : Duration.format(Duration.millis(Math.floor(Duration.toMillis(h.uptime) / 1000) * 1000))
          const error = h.lastError === undefined ? "" : `  last error: ${h.lastError.split("\n")[0]}`
          return `${pad(d.id, 18)} ${pad(h.state._tag, 11)} pid ${pad(String(h.pid ?? "-"), 8)} up ${pad(uptime, 10)} crashes ${h.totalCrashes}${error}`
        })
        // Move back over the previous frame and redraw it in place.
        const up = drawn > 0 ? `\x1b[${drawn}A` : ""
        drawn = lines.length
        yield* Effect.sync(() => process.stdout.write(up + lines.map((l) => `\x1b[2K${l}`).join("\n") + "\n"))
      })
      : Effect.void
    const onEvent = (event: PluginManager.ManagerEvent): Effect.Effect<void> => {
      if (tty) return Effect.void
      switch (event._tag) {
        case "WorkerCrashed":
          return Console.log(`${event.id}: crashed (${event.reason})${event.willRestart ? ", restarting" : ", giving up"}`)
        case "WorkerRestarted":
          return Console.log(`${event.id}: restarted (pid ${event.pid})`)
        case "Plugin":
          return event.event._tag === "StateChanged"
            ? Console.log(`${event.id}: ${event.event.from._tag} → ${event.event.to._tag}`)
            : event.event._tag === "Ready"
            ? Console.log(`${event.id}: ready (pid ${event.event.pid})`)
            : Effect.void
      }
    }
    return { refresh, onEvent }
  })
