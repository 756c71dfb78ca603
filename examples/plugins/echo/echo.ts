#!/usr/bin/env node
// The `echo` example plugin, written with the worker SDK. Run by `npm start` and the examples.
import * as Effect from "effect/Effect"
import * as PluginWorker from "../../../src/PluginWorker.ts"

PluginWorker.main({
  name: "echo",
  handlers: {
    // Returns its params unchanged.
    echo: (params) => Effect.succeed(params),
    // Asks the host to do the arithmetic: a plugin→host request.
    sum: (params) => PluginWorker.callHost("host.sum", params),
    // Logs through the host, then answers.
    greet: (params) =>
      PluginWorker.log("info", "greeting someone", { who: params }).pipe(Effect.as(`hello, ${String(params)}`)),
    // Crashes the process, to show what the host sees.
    crash: () => Effect.sync(() => process.exit(7)),
    // Answers health probes (`PluginHealth` sends `health` to running plugins).
    health: () => Effect.sync(() => ({ ok: true, pid: process.pid, uptimeSecs: Math.round(process.uptime()) })),
    // The tools it offers, in the MCP `{tools: [{name}]}` shape `PluginHealth.discover` reads.
    "tools/list": () =>
      Effect.succeed({ tools: [{ name: "echo" }, { name: "sum" }, { name: "greet" }] })
  }
})
