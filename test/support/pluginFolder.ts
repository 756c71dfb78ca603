/**
 * Plugin folders on disk for the tests of where a manifest's relative executable is found: a
 * temporary folder holding a manifest next to its executable, and a way to run part of a test
 * from another working directory. Both are undone when the test's Scope closes.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import { fixture, node } from "./processes.ts"

/** A fresh folder under the OS temp dir, removed when the Scope closes. */
export const tempFolder = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** Writes `content` at `dir/relative`, creating folders; returns the absolute path. */
export const writeFile = (dir: string, relative: string, content: string): string => {
  const file = path.join(dir, relative)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, content)
  return file
}

/**
 * A folder with `names.toml` declaring `executable = "bin/names.sh"` (the `env-dump.sh`
 * fixture: it answers every request with the names of its environment variables). Returns the
 * folder and the manifest file.
 */
export const namesPlugin = Effect.gen(function*() {
  const dir = yield* tempFolder("plugin-host-names-")
  const script = path.join(dir, "bin/names.sh")
  fs.mkdirSync(path.dirname(script), { recursive: true })
  fs.copyFileSync(fixture("env-dump.sh"), script)
  fs.chmodSync(script, 0o755)
  const file = writeFile(dir, "names.toml", `name = "names"\nversion = "1.0.0"\nexecutable = "bin/names.sh"\n`)
  return { dir, file }
})

/**
 * A folder with `rss-poller.toml`, an ephemeral poller of kind `rss` whose executable is
 * `bin/node` (a link to the Node running the tests) running the `ephemeral-poller.mjs` fixture.
 */
export const ephemeralPoller = Effect.gen(function*() {
  const dir = yield* tempFolder("plugin-host-poller-")
  fs.mkdirSync(path.join(dir, "bin"))
  fs.symlinkSync(node, path.join(dir, "bin/node"))
  const file = writeFile(dir, "rss-poller.toml", [
    `name = "rss-poller"`,
    `version = "1.0.0"`,
    `executable = "bin/node"`,
    `args = [${JSON.stringify(fixture("ephemeral-poller.mjs"))}]`,
    `[poller]`,
    `kinds = ["rss"]`,
    `lifecycle = "ephemeral"`,
    `tick_timeout_secs = 10`
  ].join("\n"))
  return { dir, file }
})

/** Runs the rest of the Scope from `dir` as the working directory; the old one is restored. */
export const inWorkingDirectory = (dir: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const before = process.cwd()
      process.chdir(dir)
      return before
    }),
    (before) => Effect.sync(() => process.chdir(before))
  )
