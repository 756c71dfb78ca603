/**
 * One health check of a remote plugin: discovers the instances of its NATS service
 * (`natsMicro.discover`: `$SRV.PING`, `INFO`, `STATS` at once) and judges them with
 * `GroupHealth.remoteCheck`. An instance's counters are its endpoints' summed; a broker that
 * cannot be asked makes the check `Failed` with the reason, never an error, so a health loop
 * keeps running through an outage.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Broker from "../Broker.ts"
import * as GroupHealth from "../GroupHealth.ts"
import * as NatsMicro from "./natsMicro.ts"

/**
 * A remote plugin as health watches it: its name, its NATS service, the instances it needs, and
 * (set only then) whether it is watched only because it answered discovery.
 */
export interface Remote {
  readonly plugin: string
  readonly service: string
  readonly minInstances: number
  readonly discovered?: boolean
}

/** An instance as the health models have it: latency in millis, its endpoints' counters summed. */
export const instanceOf = (instance: NatsMicro.Instance): GroupHealth.RemoteInstance => {
  const endpoints = Option.match(instance.stats, { onNone: () => [], onSome: (stats) => stats.endpoints })
  const lastError = endpoints.map((e) => e.last_error).find((error) => error !== "")
  const started = Option.getOrUndefined(Option.map(instance.stats, (stats) => stats.started))
  return new GroupHealth.RemoteInstance({
    id: instance.id,
    version: instance.version,
    latencyMillis: Duration.toMillis(instance.latency),
    requests: endpoints.reduce((sum, e) => sum + e.num_requests, 0),
    errors: endpoints.reduce((sum, e) => sum + e.num_errors, 0),
    ...(lastError === undefined ? {} : { lastError }),
    ...(started === undefined ? {} : { started })
  })
}

/** Discovers the remote plugin's instances for `wait` and judges them (never fails). */
export const check = (
  broker: Broker.Broker["Service"],
  remote: Remote,
  wait: Duration.Duration
): Effect.Effect<GroupHealth.RemoteHealthcheck> =>
  NatsMicro.discover(broker, remote.service, { wait }).pipe(
    Effect.map((found) => ({ found: found.map(instanceOf), problem: undefined })),
    Effect.catch((error) => Effect.succeed({ found: [], problem: error.message })),
    Effect.flatMap(({ found, problem }) =>
      Effect.map(Clock.currentTimeMillis, (now) => GroupHealth.remoteCheck(remote, found, now, problem))
    ),
    Effect.withSpan("PluginHealth.checkRemote", { attributes: { plugin: remote.plugin, service: remote.service } })
  )
