/**
 * A client's health snapshot for specs of the health rules and the doctor: a plugin in `state`,
 * nothing else happened to it unless `overrides` says so.
 */
import type * as PluginClient from "../../src/PluginClient.ts"

export const snapshot = (state: PluginClient.PluginState, overrides: Partial<PluginClient.HealthSnapshot> = {}): PluginClient.HealthSnapshot => ({
  pluginName: "p",
  state,
  crashesInWindow: 0,
  lastUsed: undefined,
  lastCrash: undefined,
  lastError: undefined,
  lastErrorReason: undefined,
  pid: undefined,
  uptime: undefined,
  consecutiveCrashes: 0,
  totalCrashes: 0,
  spawns: 0,
  requests: 0,
  pendingRequests: 0,
  nextRestartAt: undefined,
  stderrExcerpt: "",
  supportedMethods: undefined,
  notificationsDropped: 0,
  queuedBytes: 0,
  eventsDropped: 0,
  ...overrides
})
