#!/usr/bin/env node
// The remote scenario's worker on the SDK: `PluginWorker.mainBroker` serving `echo` as one
// instance of a NATS service under `<prefix>` (logs `serving …` on stderr once subscribed).
// env: NATS_URL, BENCH_PREFIX.
import * as Effect from "effect/Effect"
import * as PluginWorker from "../../src/PluginWorker.ts"

PluginWorker.mainBroker({
  servers: process.env.NATS_URL ?? "127.0.0.1:4222",
  prefix: process.env.BENCH_PREFIX ?? "bench.effect",
  service: "bench",
  version: "1.0.0",
  maxConcurrentRequests: 256,
  handlers: {
    echo: (params) => Effect.succeed(params ?? null)
  }
})
