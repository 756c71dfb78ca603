/**
 * The `calendar` example plugin's handlers: a LONG-LIVED poller written with the worker SDK.
 *
 * This module only exports handlers; two tiny entry files serve them unchanged:
 * `calendar.ts` on stdin/stdout (`PluginWorker.main`, what the manifest runs) and
 * `calendar-nats.ts` over NATS (`PluginWorker.mainBroker`, for a worker on another machine,
 * answering `plugins.calendar.tick` and `plugins.calendar.call`).
 *
 * `poll_tick` is deterministic and needs no network: the "calendar" is a fixed list of five
 * events. The cursor is the id of the last event seen (base64url without padding); a tick sees
 * the events after it, at most `batch` of them, and "dispatches" a reminder for those starting
 * within `remind_within_hours` of the tick's `now`. Job config (all optional):
 * `calendar_id` (`"team"` by default; `"deleted"` answers -32002, a Permanent error),
 * `batch` (1..20, default 2) and `remind_within_hours` (> 0, default 24); a bad config or cursor
 * answers -32602 (a Config error).
 *
 * The process keeps state between ticks (a tick counter, reported by `health`), which is the
 * point of a long-lived poller.
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as JsonRpc from "../../../src/JsonRpc.ts"
import * as Poller from "../../../src/Poller.ts"
import * as PluginWorker from "../../../src/PluginWorker.ts"

/** The broker subject prefix, as in the manifest's `[poller] broker_topic_prefix`. */
export const topicPrefix = "plugins.calendar"

/** One event of the fake calendar. */
export interface CalendarEvent {
  readonly id: string
  readonly title: string
  readonly startsAt: string
}

/** The whole fake calendar, in the order a tick walks it. */
export const events: ReadonlyArray<CalendarEvent> = [
  { id: "evt-1", title: "Team standup", startsAt: "2026-11-23T09:00:00Z" },
  { id: "evt-2", title: "Design review", startsAt: "2026-11-23T14:00:00Z" },
  { id: "evt-3", title: "1:1 with Ada", startsAt: "2026-11-24T10:00:00Z" },
  { id: "evt-4", title: "Release planning", startsAt: "2026-11-26T16:00:00Z" },
  { id: "evt-5", title: "Offsite", startsAt: "2026-12-10T08:00:00Z" }
]

/** The part of the `poll_tick` params this plugin reads (other fields are ignored). */
const TickParams = Schema.Struct({
  cursor: Schema.NullOr(Schema.String),
  now: Schema.String,
  config: Schema.NullOr(Schema.Struct({
    calendar_id: Schema.optionalKey(Schema.String),
    batch: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 20 }))),
    remind_within_hours: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThan(0)))
  }))
})

const configError = (message: string) => JsonRpc.error(Poller.ErrorCode.Config, message)

const decodeTick = (params: unknown) =>
  Schema.decodeUnknownEffect(TickParams)(params).pipe(
    Effect.mapError((error) => configError(`invalid poll_tick params: ${error.message.replace(/\s+/g, " ")}`))
  )

const text = new TextDecoder()
const bytes = new TextEncoder()

/** Ticks served by this process so far. */
let ticks = 0

const pollTick: PluginWorker.Handler = (params) =>
  Effect.gen(function*() {
    const tick = yield* decodeTick(params)
    const config = tick.config ?? {}
    if (config.calendar_id === "deleted") {
      return yield* Effect.fail(JsonRpc.error(Poller.ErrorCode.Permanent, "calendar `deleted` no longer exists"))
    }
    const now = Date.parse(tick.now)
    if (Number.isNaN(now)) return yield* Effect.fail(configError(`\`now\` is not a timestamp: ${tick.now}`))

    let start = 0
    if (tick.cursor !== null && tick.cursor !== "") {
      const decoded = Poller.decodeCursor(tick.cursor)
      if (Result.isFailure(decoded)) return yield* Effect.fail(configError(`bad cursor: ${decoded.failure}`))
      const last = text.decode(decoded.success)
      const index = events.findIndex((event) => event.id === last)
      if (index < 0) return yield* Effect.fail(configError(`the cursor names \`${last}\`, which is not an event`))
      start = index + 1
    }

    const batch = config.batch ?? 2
    const horizon = now + (config.remind_within_hours ?? 24) * 3_600_000
    const seen = events.slice(start, start + batch)
    const reminders = seen.filter((event) => {
      const at = Date.parse(event.startsAt)
      return at >= now && at <= horizon
    })
    ticks++
    const last = seen.at(-1)
    yield* PluginWorker.log("info", `tick ${ticks}: saw ${seen.length} events, ${reminders.length} reminders`, {
      reminders: reminders.map((event) => event.title)
    })
    return {
      // null = nothing new: the host keeps its cursor.
      next_cursor: last === undefined ? null : Poller.encodeCursor(bytes.encode(last.id)),
      next_interval_secs: start + seen.length < events.length ? 5 : 300,
      metrics: { items_seen: seen.length, items_dispatched: reminders.length }
    }
  })

/** Every method the calendar serves, on stdio and over NATS alike. */
export const handlers: Readonly<Record<string, PluginWorker.Handler>> = {
  poll_tick: pollTick,
  health: () => Effect.sync(() => ({ ok: true, ticks, pid: process.pid }))
}
