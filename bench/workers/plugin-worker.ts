#!/usr/bin/env node
// The same worker written with the effect-plugin-host worker SDK (`PluginWorker.main`): echo and
// payload; `initialize` and `shutdown` are answered by the SDK.
import * as Effect from "effect/Effect"
import * as PluginWorker from "../../src/PluginWorker.ts"

const payloads = new Map<number, string>()
const payloadOf = (params: unknown): string => {
  const bytes = typeof params === "object" && params !== null && "bytes" in params && typeof params.bytes === "number"
    ? params.bytes
    : 0
  let text = payloads.get(bytes)
  if (text === undefined) {
    text = "x".repeat(bytes)
    payloads.set(bytes, text)
  }
  return text
}

PluginWorker.main({
  name: "bench",
  handlers: {
    echo: (params) => Effect.succeed(params ?? null),
    payload: (params) => Effect.sync(() => payloadOf(params))
  }
})
