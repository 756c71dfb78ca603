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

/**
 * The fields of a doctor row for plugin `id`: healthy, idle, nothing declared or seen, unless
 * `overrides` says so (the encoded and the constructed form are alike for these fields).
 */
export const diagnosisFields = <const O extends object>(id: string, overrides?: O) => ({
  id,
  state: "Idle",
  status: "Healthy" as const,
  groups: [] as ReadonlyArray<string>,
  crashesInWindow: 0,
  consecutiveCrashes: 0,
  totalCrashes: 0,
  pendingRequests: 0,
  stderrTail: [] as ReadonlyArray<string>,
  checksum: "not declared" as const,
  envVars: [] as ReadonlyArray<string>,
  supportedMethods: [] as ReadonlyArray<string>,
  ...overrides
})
