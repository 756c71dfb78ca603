/**
 * Bundles made with rolldown at the start of a run, from the current `src/`:
 *
 * - the PluginWorker bench worker in one file (`bench/.cache/bundle/plugin-worker.mjs`): its code,
 *   the SDK and `effect`, tree-shaken and minified, as the README's "bundle the worker into one
 *   file" recipe makes a worker (`codeSplitting: false`: what the SDK loads on demand is in the
 *   same file). The worker cold-start scenario measures it as `effect-bundle`.
 * - the library itself pre-bundled (`bench/.cache/prebundle/index.js`): `src/index.ts` with
 *   `effect` and the peer dependencies external, what loads on demand in chunks of its own. Not
 *   what the package ships (`dist/` is `tsc`'s one file per module); the import scenario measures
 *   it as `effect-prebundle`, to show what our own modules cost as modules rather than as code.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { build } from "rolldown"
import { benchDir, rootDir, workers } from "./common.ts"

export const bundlePath = path.join(benchDir, ".cache", "bundle", "plugin-worker.mjs")

/** (Re)builds the bundle from the current sources. Takes about a second. */
export const buildBundle = async (): Promise<void> => {
  fs.rmSync(path.dirname(bundlePath), { recursive: true, force: true })
  await build({
    input: workers.pluginWorker,
    platform: "node",
    logLevel: "silent",
    output: { file: bundlePath, format: "esm", minify: true, codeSplitting: false }
  })
}

export const prebundlePath = path.join(benchDir, ".cache", "prebundle", "index.js")

/** (Re)builds the pre-bundled library. */
export const buildPrebundle = async (): Promise<void> => {
  fs.rmSync(path.dirname(prebundlePath), { recursive: true, force: true })
  await build({
    input: path.join(rootDir, "src", "index.ts"),
    platform: "node",
    logLevel: "silent",
    external: [/^effect(\/|$)/, /^@effect\//, /^@nats-io\//],
    output: { dir: path.dirname(prebundlePath), format: "esm" }
  })
}

/** Builds the bundle if it is missing. */
export const ensureBundle = async (): Promise<void> => {
  if (!fs.existsSync(bundlePath)) await buildBundle()
}

/** Builds the pre-bundled library if it is missing. */
export const ensurePrebundle = async (): Promise<void> => {
  if (!fs.existsSync(prebundlePath)) await buildPrebundle()
}
