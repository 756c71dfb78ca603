/**
 * The adversaries, in the order they run. Each module exports `run(name, quick)`, which
 * `adversaries/measure.ts` calls in a fresh process, one adversary per process.
 */
export interface Adversary {
  readonly name: string
  readonly title: string
  /** Skipped by `--quick` (a quick run takes the figure from a smaller sibling). */
  readonly fullOnly?: boolean
  readonly load: () => Promise<{ readonly run: (name: string, quick: boolean) => Promise<object> }>
}

const race = () => import("./race.ts")
const batch = () => import("./batch.ts")
const memory = () => import("./memory.ts")

export const adversaries: ReadonlyArray<Adversary> = [
  { name: "race-always-on", title: "slow listener race, alwaysOn", load: race },
  { name: "race-lazy", title: "slow listener race, lazy", load: race },
  { name: "batch-client", title: "one crash in a 100k batch, PluginClient", load: batch },
  { name: "batch-manager", title: "one crash in a 100k batch, PluginManager", load: batch },
  { name: "batch-1m", title: "one crash in a 1M batch, PluginClient", fullOnly: true, load: batch },
  { name: "memory-deaf", title: "notifications to a plugin that never reads", load: memory },
  { name: "memory-unread-replies", title: "a plugin that never reads the host's replies", load: memory },
  { name: "memory-slow-handler", title: "large notifications to a slow handler", load: memory },
  { name: "memory-flood", title: "notification flood to an instant handler", load: memory },
  { name: "shutdown", title: "releasing a manager with 10 plugins ignoring SIGTERM", load: () => import("./shutdown.ts") }
]
