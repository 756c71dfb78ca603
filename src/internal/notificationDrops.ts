/**
 * The notifications a connection (`RpcPeer`) drops because its `onNotification` cannot keep up
 * (see `notificationInbox.ts`): never silently. Each is counted in the connection's stats and
 * in the plugin's series of the drop counter (made at the first drop, so a connection that
 * never drops one adds no series), and a warning is logged at the first drop and every 1000th.
 *
 * @internal
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"

/**
 * Drops of one connection.
 */
export class NotificationDrops {
  /** Notifications dropped so far. */
  count = 0
  private readonly counter: Metric.Counter<number>
  private readonly plugin: string
  private readonly context: Context.Context<never>
  private readonly log: (effect: Effect.Effect<void>) => void
  /** The plugin's series of `counter`, made at the first drop. */
  private series: Metric.Counter<number> | undefined = undefined

  constructor(options: {
    /** The counter whose series (one per plugin) counts the drops. */
    readonly counter: Metric.Counter<number>
    readonly plugin: string
    /** The context the metric is updated in (the connection's). */
    readonly context: Context.Context<never>
    readonly log: (effect: Effect.Effect<void>) => void
  }) {
    this.counter = options.counter
    this.plugin = options.plugin
    this.context = options.context
    this.log = options.log
  }

  /** One notification was dropped. */
  readonly drop = (): void => {
    this.series ??= Metric.counter(this.counter.id, {
      description: this.counter.description,
      attributes: { plugin: this.plugin }
    })
    this.series.updateUnsafe(1, this.context)
    if (this.count++ % 1000 === 0) {
      this.log(Effect.logWarning(`notification handler cannot keep up: ${this.count} notification(s) dropped so far`))
    }
  }
}
