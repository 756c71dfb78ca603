/**
 * What poller specs tick with and read back: a tick's input (job `job-1`, agent `agent-7`, a
 * fixed `now`, a minute's interval hint) and cursor bytes as text and back.
 */
import type * as PollerRouter from "../../src/PollerRouter.ts"

export const tickInput = (config: unknown = {}, cursor?: Uint8Array): PollerRouter.TickInput => ({
  jobId: "job-1",
  agentId: "agent-7",
  config,
  cursor,
  now: new Date("2026-11-23T12:00:00Z"),
  intervalHint: "60 seconds"
})

/** A cursor (or any bytes) as UTF-8 text; `undefined` stays `undefined`. */
export const text = (bytes: Uint8Array | undefined) => bytes === undefined ? undefined : new TextDecoder().decode(bytes)

/** Text as UTF-8 bytes. */
export const bytes = (s: string) => new TextEncoder().encode(s)
