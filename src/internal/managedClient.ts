/**
 * The knobs a host that runs `PluginClient`s on its own behalf (the `PluginManager`) sets on
 * them, and that users of `PluginClient.make` never see: a cap on plugins spawning at once,
 * shared by every client of a manager, whether an eager policy starts the plugin as soon as
 * the client is made (a manager starts its plugins itself, in `startAll`), and a synchronous
 * observer of the client's events (how a manager forwards them to its own stream without a
 * listener fiber per plugin).
 *
 * They travel as a `Context.Reference` provided around `PluginClient.make`, so the public
 * `PluginClient.Options` stay what a user can set; `make` reads them once and hides them from
 * everything the client runs afterwards.
 *
 * @internal
 */
import * as Context from "effect/Context"
import type * as Semaphore from "effect/Semaphore"
import type * as PluginEvent from "../PluginEvent.ts"

/**
 * What a managing host decides for a client it makes.
 *
 * @internal
 */
export interface ManagedClientOptions {
  /** Held from spawn to the end of the handshake. `undefined`: no cap. */
  readonly spawnPermits: Semaphore.Semaphore | undefined
  /** Whether an eager policy starts the plugin as soon as the client is made. */
  readonly autoStart: boolean
  /**
   * Called with every event of the client as it is published (see `EventFeed.make`'s
   * `observer`): it must return at once and never throw.
   */
  readonly observe?: ((event: PluginEvent.PluginEvent) => void) | undefined
}

/**
 * A client made by a user: no spawn cap, an eager policy starts at once.
 *
 * @internal
 */
export const standalone: ManagedClientOptions = { spawnPermits: undefined, autoStart: true }

/**
 * The options of the client being made; {@link standalone} unless a managing host provides
 * them around `PluginClient.make`.
 *
 * @internal
 */
export const ManagedClient = Context.Reference<ManagedClientOptions>("effect-plugin-host/internal/ManagedClient", {
  defaultValue: () => standalone
})
