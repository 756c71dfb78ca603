#!/usr/bin/env node
// The `calendar` plugin served over NATS, e.g. on another machine: it answers
// `plugins.calendar.tick` (poll_tick) and `plugins.calendar.call` (any method, JSON-RPC) in the
// queue group `calendar`, so several copies share the ticks and calls, and each copy answers
// NATS micro discovery (`$SRV.PING/INFO/STATS`) as one instance of the service `calendar`, which
// is how the host's health and `plugin-host doctor --nats` count them. Same handlers as `calendar.ts`.
//
//   NATS_URL=nats://127.0.0.1:4222 node examples/plugins/calendar/calendar-nats.ts
//
// It logs `serving plugins.calendar.tick and plugins.calendar.call …` to stderr once subscribed,
// and exits 0 on SIGTERM/SIGINT after draining its connection.
import * as PluginWorker from "../../../src/PluginWorker.ts"
import { handlers, topicPrefix } from "./handlers.ts"

PluginWorker.mainBroker({
  servers: process.env.NATS_URL ?? "127.0.0.1:4222",
  prefix: topicPrefix,
  queue: "calendar",
  name: "calendar",
  version: "0.1.0",
  handlers
})
