/**
 * effect-plugin-host: host out-of-process plugins from Effect.
 *
 * Each module is exported as a namespace, in the order data flows: the wire (`JsonRpc`,
 * `Framing`), one process (`PluginProcess`), the connection over it (`RpcPeer`), the errors
 * calls fail with (`PluginClientError`), and the plugin side (`PluginWorker`).
 *
 * @since 0.1.0
 */
export * as Framing from "./Framing.ts"
export * as JsonRpc from "./JsonRpc.ts"
export * as PluginClientError from "./PluginClientError.ts"
export * as PluginProcess from "./PluginProcess.ts"
export * as PluginWorker from "./PluginWorker.ts"
export * as RpcPeer from "./RpcPeer.ts"
