/**
 * `plugin-host init` (run as a subprocess): the folder it scaffolds is discovered as a valid
 * plugin whose checksum verifies, and the starter plugin, hosted by a real `PluginClient`,
 * answers the handshake and its methods and leaves no process behind; existing work is never
 * overwritten.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import { eventually, isAlive, live, liveChildren, node } from "./support/processes.ts"

const root = path.resolve(import.meta.dirname, "..")
const main = path.join(root, "src/cli/main.ts")

/** Runs `plugin-host ARGS` to completion (bounded) in `cwd`. */
const cli = (args: ReadonlyArray<string>, cwd = root) => {
  const result = spawnSync(node, [main, ...args], { cwd, encoding: "utf8", timeout: 20_000 })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** The host environment: the Node running the tests first on PATH, for `#!/usr/bin/env node`. */
const hostEnv = { PATH: [path.dirname(node), process.env.PATH].join(path.delimiter) }

const hosting = Layer.merge(live, PluginProcess.layerNode)

/** Room for tests that run the command several times on a loaded machine. */
const subprocesses = 60_000

const languages = [
  { language: "node", executable: "plugin.mjs" },
  { language: "python", executable: "plugin.py" }
] as const

describe("plugin-host init", () => {
  const dirs: Array<string> = []
  const tempDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-init-"))
    dirs.push(dir)
    return dir
  }
  afterEach(async () => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  for (const { executable, language } of languages) {
    it.live(`init ${language}: discovered as valid, and a real PluginClient gets initialize, echo and health answered`, () =>
      Effect.gen(function*() {
        const plugins = path.join(tempDir(), "plugins")
        const name = `hello-${language}`
        const run = cli(["init", language, path.join(plugins, name)])
        assert.strictEqual(run.code, 0, run.stderr)
        assert.include(run.stdout, "next steps")
        assert.include(run.stdout, `plugin-host call ${name} echo`)

        const executablePath = path.join(plugins, name, executable)
        assert.strictEqual(fs.statSync(executablePath).mode & 0o777, 0o755)
        const manifestText = fs.readFileSync(path.join(plugins, name, `${name}.toml`), "utf8")
        assert.include(manifestText, `name = "${name}"`)
        assert.include(manifestText, `version = "0.1.0"`)
        assert.include(manifestText, `allowed_env_vars = ["PATH"]`)
        assert.include(manifestText, "# The SHA-256 of the executable")

        const found = yield* PluginManifest.discover(plugins)
        assert.deepStrictEqual(found.map((d) => d._tag), ["Valid"], found.map((d) => d._tag === "Rejected" ? d.error.message : "").join())
        const valid = found[0]
        if (valid?._tag !== "Valid") return
        assert.strictEqual(valid.manifest.name, name)
        assert.strictEqual(valid.executablePath, executablePath)
        assert.strictEqual(valid.manifest.checksumSha256, yield* PluginManifest.checksum(executablePath))

        const pid = yield* Effect.gen(function*() {
          const client = yield* PluginClient.make(valid.manifest, {
            hostEnv,
            handshake: Handshake.initialize(),
            policy: LifetimePolicy.makeUnsafe({ shutdownGrace: "2 seconds", drainTimeout: "2 seconds" })
          })
          assert.deepStrictEqual(yield* client.request("echo", { hello: [1, 2] }), { hello: [1, 2] })
          const health = yield* client.health
          assert.includeMembers([...(health.supportedMethods ?? [])], ["initialize", "echo", "health", "shutdown"])
          assert.deepStrictEqual(yield* client.request("initialize"), {
            ok: true,
            supportedMethods: ["initialize", "echo", "health", "shutdown"]
          })
          const alive = yield* client.request("health")
          assert.isTrue(typeof alive === "object" && alive !== null && "ok" in alive && alive.ok === true)
          const unknown = yield* client.request("nope").pipe(Effect.flip)
          assert.strictEqual(unknown.reason._tag, "PluginError")
          assert.isDefined(health.pid)
          return health.pid ?? 0
        }).pipe(Effect.scoped)
        assert.isTrue(yield* eventually(() => !isAlive(pid), 5_000), `plugin ${pid} outlived its scope`)
      }).pipe(Effect.provide(hosting)), subprocesses)

    it(`init ${language}: the plugin answers one line per request on stdout, logs on stderr, and exits 0 when stdin ends`, () => {
      const dir = path.join(tempDir(), "plugin")
      assert.strictEqual(cli(["init", language, dir, "--name", "lines"]).code, 0)
      const input = [
        { jsonrpc: "2.0", id: 1, method: "echo", params: "hi" },
        { jsonrpc: "2.0", method: "echo", params: "a notification gets no answer" },
        { jsonrpc: "2.0", id: 2, method: "missing" }
      ].map((message) => JSON.stringify(message)).join("\n") + "\n"
      const result = spawnSync(path.join(dir, executable), { input, encoding: "utf8", env: hostEnv, timeout: 10_000 })
      assert.strictEqual(result.status, 0, result.stderr)
      const replies: ReadonlyArray<unknown> = result.stdout.trim().split("\n").map((line): unknown => JSON.parse(line))
      assert.deepStrictEqual(replies, [
        { jsonrpc: "2.0", id: 1, result: "hi" },
        { jsonrpc: "2.0", id: 2, error: { code: -32601, message: "Method not found: missing" } }
      ])
      assert.include(result.stderr, "lines: ready")
    }, subprocesses)
  }

  it("init --name without a folder creates ./plugins/<name> in the working folder", () => {
    const cwd = tempDir()
    const run = cli(["init", "node", "--name", "weather"], cwd)
    assert.strictEqual(run.code, 0, run.stderr)
    assert.isTrue(fs.existsSync(path.join(cwd, "plugins", "weather", "weather.toml")))
    assert.isTrue(fs.existsSync(path.join(cwd, "plugins", "weather", "plugin.mjs")))
  })

  it("init refuses (exit 2) a folder that is not empty, a name that is not a plugin name, and no folder or name", () => {
    const cwd = tempDir()
    const taken = path.join(cwd, "taken")
    fs.mkdirSync(taken)
    fs.writeFileSync(path.join(taken, "notes.txt"), "mine")
    const refused = cli(["init", "python", taken], cwd)
    assert.strictEqual(refused.code, 2)
    assert.include(refused.stderr, "is not empty")
    assert.deepStrictEqual(fs.readdirSync(taken), ["notes.txt"])

    const badName = cli(["init", "node", path.join(cwd, "My_Plugin")], cwd)
    assert.strictEqual(badName.code, 2)
    assert.include(badName.stderr, "`My_Plugin` is not a plugin name")
    assert.isFalse(fs.existsSync(path.join(cwd, "My_Plugin")))

    const nothing = cli(["init", "node"], cwd)
    assert.strictEqual(nothing.code, 2)
    assert.include(nothing.stderr, "--name")
    assert.isFalse(fs.existsSync(path.join(cwd, "plugins")))

    const language = cli(["init", "ruby", path.join(cwd, "gem")], cwd)
    assert.strictEqual(language.code, 2)
  }, subprocesses)
})
