/**
 * effect-plugin-host: host out-of-process plugins from Effect.
 *
 * Each module is exported as a namespace, in the order data flows: the wire (`JsonRpc`,
 * `Framing`), manifests and policy (`PluginManifest`, `LifetimePolicy`, `RestartWindow`), one
 * process (`PluginProcess`, and `Leftovers`: what a killed host left running), the connection over it (`RpcPeer`), one plugin's lifetime
 * (`PluginClient`, with `Handshake` and typed `PluginMethod`s grouped in a `PluginContract` that
 * host and plugin share), many plugins (`PluginManager`,
 * `PluginHealth` with the pure `GroupHealth` rules and the `DoctorReport`), plugins on other machines
 * (`RemotePlugin`, a NATS service behind the same client contract), pollers (`Poller`,
 * `PollerRouter`, over a `Broker`), the errors calls fail with (`PluginClientError`), and the
 * plugin side (`PluginWorker`).
 *
 * @since 0.1.0
 */
export * as Broker from "./Broker.ts"
export * as DoctorReport from "./DoctorReport.ts"
export * as Framing from "./Framing.ts"
export * as GroupHealth from "./GroupHealth.ts"
export * as Handshake from "./Handshake.ts"
export * as JsonRpc from "./JsonRpc.ts"
export * as Leftovers from "./Leftovers.ts"
export * as LifetimePolicy from "./LifetimePolicy.ts"
export * as ManifestSchema from "./ManifestSchema.ts"
export * as PluginClient from "./PluginClient.ts"
export * as PluginClientError from "./PluginClientError.ts"
export * as PluginContract from "./PluginContract.ts"
export * as PluginHealth from "./PluginHealth.ts"
export * as PluginManager from "./PluginManager.ts"
export * as PluginManifest from "./PluginManifest.ts"
export * as PluginMethod from "./PluginMethod.ts"
export * as PluginProcess from "./PluginProcess.ts"
export * as PluginWorker from "./PluginWorker.ts"
export * as Poller from "./Poller.ts"
export * as PollerRouter from "./PollerRouter.ts"
export * as RemotePlugin from "./RemotePlugin.ts"
export * as RestartWindow from "./RestartWindow.ts"
export * as RpcPeer from "./RpcPeer.ts"
