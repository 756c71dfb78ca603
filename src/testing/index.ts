/**
 * `effect-plugin-host/testing`: test doubles for the plugin host. It owns the
 * in-memory `ChildProcessSpawner` whose scripted plugin behaviours let the
 * higher layers be tested under `TestClock` without real processes.
 *
 * @since 0.1.0
 */
export * as InMemorySpawner from "./InMemorySpawner.ts"
