/**
 * The NATS micro-services protocol (ADR-32), both sides, over any `Broker`: a service instance
 * answers `PING`, `INFO` and `STATS` on `$SRV.<VERB>`, `$SRV.<VERB>.<name>` and
 * `$SRV.<VERB>.<name>.<id>` ({@link respond}); a client finds the instances of a service by
 * asking all of them at once and gathering the replies ({@link discover}: ping latency, info and
 * endpoint stats per instance). The replies are Schema structs with the ADR's field names
 * (`queue_group`, `num_requests`, `processing_time` in nanoseconds, `started` as an RFC 3339
 * UTC date…) and `type`s (`io.nats.micro.v1.ping_response`, `…info_response`,
 * `…stats_response`), so `nats micro ls/info/stats` reads an instance served here, and
 * discovery reads services written with any official client.
 *
 * Why here and not `@nats-io/services`: that package has no stable release. On npm (checked
 * 2026-12-06 with `npm view @nats-io/services`) it has only the prereleases `3.0.0-9` and
 * `3.0.0-25`, `latest` pointing at `3.0.0-25`, which depends on the prerelease
 * `@nats-io/nats-core@3.0.0-50`, while this package is built on the stable
 * `@nats-io/transport-node@3.4.0` (`nats-core` 3.4.0): it would add a second, prerelease core
 * to every host. The part we need is small (nine subjects, three JSON replies), and written
 * over `Broker` it also runs on `Broker.layerMemory`, where `TestClock` drives it. The endpoints
 * themselves and their counters belong to whoever serves them (the plugin worker); the
 * responder only reads them through `endpoints()`.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SchemaGetter from "effect/SchemaGetter"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Broker from "../Broker.ts"
import { InvalidService } from "./invalidService.ts"

// ---------------------------------------------------------------------------------------------
// models: the replies, as ADR-32 spells them
// ---------------------------------------------------------------------------------------------

/** The `type` of each reply. */
export const ResponseType = {
  ping: "io.nats.micro.v1.ping_response",
  info: "io.nats.micro.v1.info_response",
  stats: "io.nats.micro.v1.stats_response"
} as const

/** Go services send `null` for metadata never set: read as `{}`. */
const Metadata = Schema.NullOr(Schema.Record(Schema.String, Schema.String)).pipe(
  Schema.decodeTo(Schema.Record(Schema.String, Schema.String), {
    decode: SchemaGetter.transform((metadata: Readonly<Record<string, string>> | null) => metadata ?? {}),
    encode: SchemaGetter.transform((metadata: Readonly<Record<string, string>>) => metadata)
  })
)

const identity = {
  name: Schema.String,
  id: Schema.String,
  version: Schema.String,
  metadata: Metadata
}

/** The reply to `PING`: who answered. */
export const PingResponse = Schema.Struct({ type: Schema.Literal(ResponseType.ping), ...identity })
export type PingResponse = typeof PingResponse.Type

/** What names an endpoint, in `INFO` and `STATS` replies alike. */
const endpointIdentity = {
  name: Schema.String,
  subject: Schema.String,
  queue_group: Schema.String
}

/** One endpoint in an `INFO` reply. */
export const EndpointInfo = Schema.Struct({ ...endpointIdentity, metadata: Metadata })
export type EndpointInfo = typeof EndpointInfo.Type

/** The reply to `INFO`: the service's description and endpoints. */
export const InfoResponse = Schema.Struct({
  type: Schema.Literal(ResponseType.info),
  ...identity,
  description: Schema.String,
  endpoints: Schema.Array(EndpointInfo)
})
export type InfoResponse = typeof InfoResponse.Type

/**
 * One endpoint's counters in a `STATS` reply: requests and errors since the instance started,
 * the last error (`""` when none), the total and average handler time in nanoseconds.
 */
export const EndpointStats = Schema.Struct({
  ...endpointIdentity,
  num_requests: Schema.Number,
  num_errors: Schema.Number,
  last_error: Schema.String,
  processing_time: Schema.Number,
  average_processing_time: Schema.Number,
  data: Schema.optionalKey(Schema.Unknown)
})
export type EndpointStats = typeof EndpointStats.Type

/** The reply to `STATS`: when the instance started (RFC 3339, UTC) and its endpoints' counters. */
export const StatsResponse = Schema.Struct({
  type: Schema.Literal(ResponseType.stats),
  ...identity,
  started: Schema.String,
  endpoints: Schema.Array(EndpointStats)
})
export type StatsResponse = typeof StatsResponse.Type

// ---------------------------------------------------------------------------------------------
// subjects
// ---------------------------------------------------------------------------------------------

/** The verbs every instance answers. */
export type Verb = "PING" | "INFO" | "STATS"

const verbs: ReadonlyArray<Verb> = ["PING", "INFO", "STATS"]

/** `$SRV.<verb>`, `$SRV.<verb>.<name>` or `$SRV.<verb>.<name>.<id>`. */
export const subject = (verb: Verb, name?: string | undefined, id?: string | undefined): string =>
  ["$SRV", verb, ...(name === undefined ? [] : [name]), ...(name === undefined || id === undefined ? [] : [id])].join(".")

// ---------------------------------------------------------------------------------------------
// responder
// ---------------------------------------------------------------------------------------------

/** The service description is not what ADR-32 allows (defined apart: the stdio worker SDK exports it without loading this module). */
export { InvalidService }

/**
 * One instance of a service: its `name` (the kind, shared by every instance), its unique `id`,
 * its SemVer `version`, when it `started` (epoch millis), and its endpoints' counters now.
 */
export interface ResponderOptions {
  readonly name: string
  readonly id: string
  readonly version: string
  readonly description?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
  readonly started: number
  readonly endpoints: () => ReadonlyArray<EndpointStats>
}

const namePattern = /^[A-Za-z0-9\-_]+$/
// The SemVer regular expression semver.org suggests (as the official clients use).
const semVerPattern =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/

/** Whether an instance's name, version and id are what ADR-32 allows (what {@link respond} checks first). */
export const validate = (options: Pick<ResponderOptions, "name" | "version" | "id">): Effect.Effect<void, InvalidService> =>
  !namePattern.test(options.name)
    ? Effect.fail(new InvalidService({ field: "name", detail: `\`${options.name}\` must be letters, digits, \`-\` and \`_\`` }))
    : !semVerPattern.test(options.version)
    ? Effect.fail(new InvalidService({ field: "version", detail: `\`${options.version}\` is not SemVer` }))
    : !namePattern.test(options.id)
    ? Effect.fail(new InvalidService({ field: "id", detail: `\`${options.id}\` must be letters, digits, \`-\` and \`_\`` }))
    : Effect.void

/**
 * Counters and nanoseconds as whole numbers: Go reads the durations as `time.Duration` (an
 * int64), so `nats micro stats` rejects a reply with `1234.5`; the ADR truncates the average.
 */
const whole = (n: number): number => Number.isFinite(n) ? Math.max(0, Math.trunc(n)) : 0

/** The three replies of an instance, built at each request (the stats are read then). */
export const replies = (options: ResponderOptions) => {
  const id = { name: options.name, id: options.id, version: options.version, metadata: { ...options.metadata } }
  return {
    ping: (): PingResponse => ({ type: ResponseType.ping, ...id }),
    info: (): InfoResponse => ({
      type: ResponseType.info,
      ...id,
      description: options.description ?? "",
      endpoints: options.endpoints().map((e) => ({ name: e.name, subject: e.subject, queue_group: e.queue_group, metadata: {} }))
    }),
    stats: (): StatsResponse => ({
      type: ResponseType.stats,
      ...id,
      started: new Date(options.started).toISOString(),
      endpoints: options.endpoints().map((e) => ({
        name: e.name,
        subject: e.subject,
        queue_group: e.queue_group,
        num_requests: whole(e.num_requests),
        num_errors: whole(e.num_errors),
        last_error: e.last_error,
        processing_time: whole(e.processing_time),
        average_processing_time: whole(e.average_processing_time),
        ...(e.data === undefined ? {} : { data: e.data })
      }))
    })
  }
}

/**
 * Serves the discovery subjects of one instance in the current Scope: `PING`, `INFO` and
 * `STATS`, each on all three subjects, with no queue group (every instance answers).
 */
export const respond = (
  broker: Broker.Broker["Service"],
  options: ResponderOptions
): Effect.Effect<void, Broker.BrokerError | InvalidService, Scope.Scope> =>
  Effect.gen(function*() {
    yield* validate(options)
    const reply = replies(options)
    const bodies: Record<Verb, () => unknown> = { PING: reply.ping, INFO: reply.info, STATS: reply.stats }
    for (const verb of verbs) {
      const answer = () => Broker.encodeJson(bodies[verb]())
      for (const target of [subject(verb), subject(verb, options.name), subject(verb, options.name, options.id)]) {
        yield* broker.serve(target, answer)
      }
    }
  })

// ---------------------------------------------------------------------------------------------
// discovery
// ---------------------------------------------------------------------------------------------

/**
 * One instance found by {@link discover}: who it is, how long its `PING` reply took, and its
 * `INFO` and `STATS` replies when they came within the wait.
 */
export interface Instance {
  readonly name: string
  readonly id: string
  readonly version: string
  readonly metadata: Readonly<Record<string, string>>
  readonly latency: Duration.Duration
  readonly info: Option.Option<InfoResponse>
  readonly stats: Option.Option<StatsResponse>
}

/** How long discovery listens for replies (every instance answering within it is found). */
export interface DiscoverOptions {
  readonly wait: Duration.Input
}

const textDecoder = new TextDecoder()

/**
 * Every reply to `verb` within `wait` that `decode` accepts, each with the time it took. A
 * subject nobody serves has no replies; a reply that is not the ADR's shape (another kind of
 * service on the subject) is skipped.
 */
const gatherVerb = <A>(
  broker: Broker.Broker["Service"],
  verb: Verb,
  name: string | undefined,
  decode: (json: string) => Option.Option<A>,
  wait: Duration.Duration
): Effect.Effect<ReadonlyArray<readonly [A, Duration.Duration]>, Broker.BrokerError> =>
  Effect.gen(function*() {
    const sent = yield* Clock.currentTimeNanos
    const replies = yield* broker.requestMany(subject(verb, name), new Uint8Array(), { maxWait: wait }).pipe(
      Stream.mapEffect((data) =>
        Effect.map(Clock.currentTimeNanos, (now) => [decode(textDecoder.decode(data)), Duration.nanos(now - sent)] as const)
      ),
      Stream.runCollect,
      Effect.catchReason("BrokerError", "NoResponders", () => Effect.succeed([]))
    )
    return replies.flatMap(([reply, took]) => Option.isSome(reply) ? [[reply.value, took] as const] : [])
  })

/**
 * Finds the instances of the service `name` (of every service when `name` is `undefined`):
 * asks `PING`, `INFO` and `STATS` at once and listens `wait` for the replies; an instance is
 * one that answered `PING`, with the time its answer took. No instance is an empty list; a
 * broker that cannot be reached fails.
 */
export const discover = (
  broker: Broker.Broker["Service"],
  name: string | undefined,
  options: DiscoverOptions
): Effect.Effect<ReadonlyArray<Instance>, Broker.BrokerError> =>
  Effect.gen(function*() {
    const wait = Duration.fromInputUnsafe(options.wait)
    const [pings, infos, stats] = yield* Effect.all([
      gatherVerb(broker, "PING", name, Schema.decodeUnknownOption(Schema.fromJsonString(PingResponse)), wait),
      gatherVerb(broker, "INFO", name, Schema.decodeUnknownOption(Schema.fromJsonString(InfoResponse)), wait),
      gatherVerb(broker, "STATS", name, Schema.decodeUnknownOption(Schema.fromJsonString(StatsResponse)), wait)
    ], { concurrency: "unbounded" })
    const byId = <A extends { readonly id: string }>(replies: ReadonlyArray<readonly [A, Duration.Duration]>) =>
      new Map(replies.map(([reply]) => [reply.id, reply] as const))
    const infoById = byId(infos)
    const statsById = byId(stats)
    const seen = new Set<string>()
    return pings.flatMap(([ping, latency]): Array<Instance> => {
      if (seen.has(ping.id)) return []
      seen.add(ping.id)
      return [{
        name: ping.name,
        id: ping.id,
        version: ping.version,
        metadata: ping.metadata,
        latency,
        info: Option.fromUndefinedOr(infoById.get(ping.id)),
        stats: Option.fromUndefinedOr(statsById.get(ping.id))
      }]
    })
  })
