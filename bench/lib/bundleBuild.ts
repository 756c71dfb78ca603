/**
 * The PluginWorker bench worker bundled into one file (`bench/.cache/bundle/plugin-worker.mjs`):
 * its code, the SDK from the current `src/` and `effect`, tree-shaken and minified by rolldown,
 * as the README's "bundle the worker into one file" recipe makes a worker (`codeSplitting:
 * false`: what the SDK loads on demand is in the same file). The worker cold-start scenario
 * measures it as `effect-bundle`, the figure a worker shipped that way starts in.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { build } from "rolldown"
import { benchDir, workers } from "./common.ts"

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

/** Builds the bundle if it is missing. */
export const ensureBundle = async (): Promise<void> => {
  if (!fs.existsSync(bundlePath)) await buildBundle()
}
