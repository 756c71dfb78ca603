/**
 * What a plugin says on its own: its notifications. `log` goes to the host's logger (annotated
 * with the plugin's name) and to the events; `streams.open` / `streams.emit` / `streams.close`
 * become `Stream` events (and the user's stream handler), with the channels left open tracked so
 * that a dead plugin's channels can be closed for it; anything else is a `Notification` event and
 * goes to the user's handler.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as JsonRpc from "../JsonRpc.ts"
import type * as PluginEvent from "../PluginEvent.ts"
import * as Protocol from "./protocol.ts"

/** The events this module produces: what the plugin said. */
export type MessageEvent = Extract<PluginEvent.PluginEvent, { readonly _tag: "Log" | "Notification" | "Stream" }>

/** A stream channel's open, value or close (synthetic when the host closes it for a dead plugin). */
export type StreamMessage = PluginEvent.StreamEvent

/** The handling of one client's plugin messages. */
export interface PluginMessages {
  readonly onNotification: (notification: JsonRpc.Notification) => Effect.Effect<void>
  /**
   * Publishes a synthetic `close` for every channel left open, now; the effect returned runs the
   * user's stream handler on them.
   */
  readonly closeOpenStreams: () => Effect.Effect<void>
  /** A new process starts with no channel open. */
  readonly forgetOpenStreams: () => void
}

const streamActions: Readonly<Record<string, "open" | "emit" | "close">> = {
  "streams.open": "open",
  "streams.emit": "emit",
  "streams.close": "close"
}

const channelOf = (params: unknown): string => {
  if (typeof params === "object" && params !== null) {
    for (const key of ["channel", "streamId", "id"]) {
      const value: unknown = Reflect.get(params, key)
      if (typeof value === "string" || typeof value === "number") return String(value)
    }
  }
  return "default"
}

/** Makes the handling for plugin `name`. */
export const make = (options: {
  readonly name: string
  readonly publish: (event: MessageEvent) => void
  readonly onNotification: ((notification: JsonRpc.Notification) => Effect.Effect<void>) | undefined
  readonly onStreamNotification: ((event: StreamMessage) => Effect.Effect<void>) | undefined
}): PluginMessages => {
  const name = options.name
  // Stream channels the running plugin has opened and not closed.
  const openChannels = new Set<string>()
  const emitStream = (event: StreamMessage): Effect.Effect<void> => {
    options.publish(event)
    return options.onStreamNotification === undefined ? Effect.void : options.onStreamNotification(event)
  }
  const log = (notification: JsonRpc.Notification): Effect.Effect<void> => {
    const params = Option.getOrUndefined(Protocol.decodeLogParams(notification.params))
    const level = Protocol.logLevelOf(params?.level)
    const message = params?.message ?? JSON.stringify(notification.params)
    const annotations: Record<string, unknown> = { plugin: name, source: "plugin" }
    if (params?.timestamp !== undefined) annotations.pluginTimestamp = params.timestamp
    if (params?.meta !== undefined) annotations.meta = params.meta
    return Effect.logWithLevel(level)(message).pipe(
      Effect.annotateLogs(annotations),
      Effect.andThen(Effect.sync(() => options.publish({ _tag: "Log", plugin: name, level, message, meta: params?.meta })))
    )
  }
  const onNotification = (notification: JsonRpc.Notification): Effect.Effect<void> => {
    if (notification.method === "log") return log(notification)
    const action = Object.hasOwn(streamActions, notification.method) ? streamActions[notification.method] : undefined
    if (action !== undefined) {
      return Effect.suspend(() => {
        const channel = channelOf(notification.params)
        if (action === "open") openChannels.add(channel)
        if (action === "close") openChannels.delete(channel)
        return emitStream({ _tag: "Stream", plugin: name, action, channel, params: notification.params, synthetic: false })
      })
    }
    return Effect.suspend(() => {
      options.publish({ _tag: "Notification", plugin: name, method: notification.method, params: notification.params })
      return options.onNotification === undefined ? Effect.void : options.onNotification(notification)
    })
  }
  const closeOpenStreams = (): Effect.Effect<void> => {
    if (openChannels.size === 0) return Effect.void
    const channels = [...openChannels]
    openChannels.clear()
    const handled = channels.map((channel) =>
      emitStream({ _tag: "Stream", plugin: name, action: "close", channel, params: { channel, reason: "plugin exited" }, synthetic: true })
    )
    return Effect.forEach(handled, (effect) => effect, { discard: true })
  }
  return { onNotification, closeOpenStreams, forgetOpenStreams: () => openChannels.clear() }
}
