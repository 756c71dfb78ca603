#!/usr/bin/env node
// The `echo` example plugin, written with the worker SDK. Run by `npm start`.
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
    crash: () => Effect.sync(() => process.exit(7))
  }
})
