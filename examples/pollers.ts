/**
 * Poller plugins behind a `PollerRouter`: the router maps a job's *kind* to the plugin that
 * serves it and runs the plugin's lifecycle. `rss` is served by the ephemeral `rss-poller` (one
 * Python process per tick, one line in, one line out), `calendar` by the long-lived `calendar`
 * (one TypeScript worker kept running, sent a `poll_tick` request per tick).
 *
 * A tiny scheduler carries each job's cursor from tick to tick, and a Permanent error — the
 * plugin saying a job can never succeed — is handled with `Effect.catchReason`.
 *
 * Run with `node examples/pollers.ts` (Node 24). With `NATS_URL` set, the router gets a
 * `NatsBroker` and the calendar's ticks go to `plugins.calendar.tick` over NATS instead, served
 * by `examples/plugins/calendar/calendar-nats.ts` running anywhere:
 *
 *   NATS_URL=nats://127.0.0.1:4222 node examples/plugins/calendar/calendar-nats.ts &
 *   NATS_URL=nats://127.0.0.1:4222 node examples/pollers.ts
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as path from "node:path"
import * as NatsBroker from "../src/NatsBroker.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import type * as Poller from "../src/Poller.ts"
import * as PollerRouter from "../src/PollerRouter.ts"

const pluginDir = path.resolve(import.meta.dirname, "plugins")
const hostEnv = { ...process.env, PATH: [path.dirname(process.execPath), process.env.PATH].join(path.delimiter) }
const natsUrl = process.env.NATS_URL

// A fixed "now" keeps the output the same on every run (the calendar reminds of events starting
// within 24 h of it).
const now = new Date("2026-11-23T08:00:00Z")

const text = new TextDecoder()
const describeAck = (ack: Poller.TickAck) =>
  `saw ${ack.metrics.itemsSeen}, dispatched ${ack.metrics.itemsDispatched}, cursor ${
    ack.nextCursor === undefined ? "unchanged" : JSON.stringify(text.decode(ack.nextCursor))
  }, next tick in ${ack.nextIntervalHint === undefined ? "(no hint)" : Duration.format(ack.nextIntervalHint)}`

/** Ticks one job `times` times, carrying its cursor, as a scheduler would. */
const runJob = (router: PollerRouter.PollerRouter["Service"], kind: string, jobId: string, config: unknown, times: number) =>
  Effect.gen(function*() {
    let cursor: Uint8Array | undefined
    for (let n = 1; n <= times; n++) {
      const ack = yield* router.tick(kind, { jobId, agentId: "example", config, cursor, now, intervalHint: "60 seconds" })
      yield* Console.log(`${kind} tick ${n}: ${describeAck(ack)}`)
      // An absent cursor means "keep yours"; an empty one would mean "start over".
      if (ack.nextCursor !== undefined) cursor = ack.nextCursor
    }
  })

const program = Effect.gen(function*() {
  const router = yield* PollerRouter.PollerRouter
  for (const found of yield* PluginManifest.discover(pluginDir)) {
    const section = found._tag === "Valid" ? found.manifest.poller : undefined
    if (found._tag !== "Valid" || section === undefined) continue
    yield* router.register(found.manifest, { hostEnv })
    const how = section.lifecycle === "ephemeral"
      ? "one process per tick"
      : natsUrl !== undefined && section.brokerTopicPrefix !== undefined
      ? `over NATS, ${section.brokerTopicPrefix}.tick`
      : "one long-lived process, over stdio"
    yield* Console.log(`registered ${found.manifest.name} for ${section.kinds.join(", ")} (${section.lifecycle}: ${how})`)
  }

  yield* runJob(router, "rss", "releases", { tags: ["release"] }, 3)
  yield* runJob(router, "calendar", "team-calendar", { batch: 2 }, 3)

  // The plugin classifies its errors; the host decides what to do with each kind.
  yield* router.tick("rss", { jobId: "old-feed", agentId: "example", config: { feed: "gone" }, now, intervalHint: "60 seconds" }).pipe(
    Effect.catchReason("PollerError", "Permanent", (reason) => Console.log(`job old-feed stopped for good: ${reason.detail}`))
  )
  yield* router.tick("calendar", { jobId: "typo", agentId: "example", config: { batch: 0 }, now, intervalHint: "60 seconds" }).pipe(
    Effect.catchReason("PollerError", "Config", (reason) => Console.log(`job typo needs a config fix: ${reason.detail}`))
  )
})

// With NATS_URL the router finds a Broker in its context and uses it for long-lived pollers that
// declare a `broker_topic_prefix`.
const RouterLayer = PollerRouter.layer.pipe(
  Layer.provide(natsUrl === undefined ? Layer.empty : NatsBroker.layer({ servers: natsUrl })),
  Layer.provideMerge(Layer.merge(NodeServices.layer, PluginProcess.layerNode))
)

NodeRuntime.runMain(program.pipe(Effect.provide(RouterLayer)))
