/**
 * The counters of one endpoint of a worker served as a NATS service, in the shape the ADR-32
 * `$SRV.STATS` reply carries them (`num_requests`, `num_errors`, `last_error`,
 * `processing_time` and `average_processing_time` in nanoseconds), kept as plain numbers the
 * service's responder reads whenever it is asked. Recording is one synchronous update per
 * request: no fiber, no lock.
 *
 * @internal
 */
import type * as NatsMicro from "./natsMicro.ts"

/** One endpoint's identity and counters, as `$SRV.STATS` reports them (`natsMicro`'s model). */
export type EndpointStats = NatsMicro.EndpointStats

/** The counters of one endpoint, updated as requests end. */
export interface EndpointCounter {
  /** Counts one request that took `nanos`; `error` is the error it was answered with, if any. */
  readonly record: (nanos: number, error?: string | undefined) => void
  /** The counters now. */
  readonly snapshot: () => EndpointStats
}

/** A counter for the endpoint `name` on `subject` in `queue`, at zero. */
export const make = (name: string, subject: string, queue: string): EndpointCounter => {
  const state = { requests: 0, errors: 0, lastError: "", nanos: 0 }
  return {
    record: (nanos, error) => {
      state.requests++
      state.nanos += Math.max(0, nanos)
      if (error !== undefined) {
        state.errors++
        state.lastError = error
      }
    },
    snapshot: () => ({
      name,
      subject,
      queue_group: queue,
      num_requests: state.requests,
      num_errors: state.errors,
      last_error: state.lastError,
      processing_time: state.nanos,
      average_processing_time: state.requests === 0 ? 0 : Math.round(state.nanos / state.requests)
    })
  }
}
