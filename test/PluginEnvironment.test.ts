/**
 * An environment that can't be tricked, with real processes: names found on `Object.prototype`
 * are never passed, loader/interpreter-injection variables need the deliberate mark (from a
 * manifest or from code), and a `#!/usr/bin/env node` plugin without `PATH` runs the host's Node
 * (or fails to start, clearly) — never a silent switch. The doctor shows both.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as DoctorReport from "../src/DoctorReport.ts"
import * as Framing from "../src/Framing.ts"
import * as GroupHealth from "../src/GroupHealth.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import { eventually, fixture, launchers, live, liveChildren, liveWith, node } from "./support/processes.ts"
import { diagnosisFields } from "./support/healthSnapshot.ts"

/** What the probe reports about itself: its Node, its environment, whether a `--require` ran. */
interface Probe {
  readonly version: string
  readonly execPath: string
  readonly env: Record<string, string>
  readonly injected: string | null
}

const probeScript = (shebang: string) =>
  [
    shebang,
    `process.stdout.write(JSON.stringify({ version: process.version, execPath: process.execPath, env: { ...process.env }, injected: globalThis.__injected ?? null }) + "\\n")`,
    `process.stdin.resume()`,
    `process.stdin.on("end", () => process.exit(0))`
  ].join("\n")

/**
 * A folder with the probe (`#!/usr/bin/env node`), a probe naming a missing interpreter, and a
 * `--require` module that marks the probe as injected; removed when the Scope closes.
 */
const scripts = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-env-real-"))
    fs.writeFileSync(path.join(dir, "probe.mjs"), probeScript("#!/usr/bin/env node"), { mode: 0o755 })
    fs.writeFileSync(path.join(dir, "missing.mjs"), probeScript("#!/usr/bin/env no-such-interpreter-5c1e"), { mode: 0o755 })
    fs.writeFileSync(path.join(dir, "inject.cjs"), `globalThis.__injected = "yes"; process.env.INJECTED = "yes"\n`)
    return {
      dir,
      probe: path.join(dir, "probe.mjs"),
      missing: path.join(dir, "missing.mjs"),
      nodeOptions: `--require ${path.join(dir, "inject.cjs")}`
    }
  }),
  ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** The host's PATH as these tests give it: the Node running them first. */
const hostPath = [path.dirname(node), "/usr/local/bin", "/usr/bin", "/bin"].join(path.delimiter)

const probeOf = (proc: PluginProcess.PluginProcess) =>
  proc.stdout.pipe(
    Framing.frames(),
    Stream.filter((f): f is string => typeof f === "string"),
    Stream.runHead,
    Effect.map((line): Probe => JSON.parse(Option.getOrThrow(line)))
  )

const spawnFailure = <R>(effect: Effect.Effect<unknown, PluginClientError.PluginClientError, R>) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(effect)
    assert.strictEqual(error.reason._tag, "Spawn")
    return error.reason.message
  })

const noChildrenLeft = async () => {
  const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
  assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
}

for (const launcher of launchers) {
  describe(`PluginProcess environment (real processes, ${launcher.name} launcher)`, () => {
    afterEach(noChildrenLeft)

    it.live("a name found only on Object.prototype (`toString`, `constructor`) is never passed", () =>
      Effect.gen(function*() {
        const { probe } = yield* scripts
        const proc = yield* PluginProcess.make({
          name: "probe",
          executable: node,
          args: [probe],
          allowedEnvVars: ["toString", "constructor", "hasOwnProperty", "HOME"]
        })
        const seen = yield* probeOf(proc)
        assert.deepStrictEqual(Object.keys(seen.env).filter((name) => name !== "HOME"), [])
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("allow-listed NODE_OPTIONS without the mark fails the spawn naming it; nothing runs", () =>
      Effect.gen(function*() {
        const { nodeOptions, probe } = yield* scripts
        const message = yield* spawnFailure(PluginProcess.make({
          name: "probe",
          executable: node,
          args: [probe],
          allowedEnvVars: ["NODE_OPTIONS"],
          hostEnv: { NODE_OPTIONS: nodeOptions }
        }))
        assert.include(message, "`NODE_OPTIONS` is a loader/interpreter injection variable")
        assert.deepStrictEqual(liveChildren(), [])
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("NODE_OPTIONS from code needs the mark too; marked, it is passed and its --require runs", () =>
      Effect.gen(function*() {
        const { nodeOptions, probe } = yield* scripts
        const spec = { name: "probe", executable: node, args: [probe], env: { NODE_OPTIONS: nodeOptions } }
        const message = yield* spawnFailure(PluginProcess.make(spec))
        assert.include(message, "`env`: `NODE_OPTIONS`")
        const proc = yield* PluginProcess.make({ ...spec, unsafeEnvVars: ["NODE_OPTIONS"] })
        const seen = yield* probeOf(proc)
        assert.strictEqual(seen.injected, "yes")
        assert.strictEqual(seen.env["NODE_OPTIONS"], nodeOptions)
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a name that is not a variable name fails the spawn naming it", () =>
      Effect.gen(function*() {
        const message = yield* spawnFailure(PluginProcess.make({ name: "probe", executable: node, env: { "A=B": "c" } }))
        assert.include(message, "\"A=B\" is not an environment variable name")
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a #!/usr/bin/env node plugin without PATH runs the host's Node, and still gets no PATH", () =>
      Effect.gen(function*() {
        const { probe } = yield* scripts
        const proc = yield* PluginProcess.make({ name: "probe", executable: probe, allowedEnvVars: ["HOME"], hostEnv: { PATH: hostPath, HOME: "/h" } })
        const seen = yield* probeOf(proc)
        assert.strictEqual(seen.version, process.version)
        assert.strictEqual(seen.execPath, node)
        assert.deepStrictEqual(Object.keys(seen.env), ["HOME"])
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a shebang interpreter the host's PATH does not have fails the start, naming it", () =>
      Effect.gen(function*() {
        const { missing } = yield* scripts
        const message = yield* spawnFailure(PluginProcess.make({ name: "probe", executable: missing, hostEnv: { PATH: hostPath } }))
        assert.include(message, "`no-such-interpreter-5c1e`")
        assert.include(message, "is not on the host's PATH")
        assert.deepStrictEqual(liveChildren(), [])
      }).pipe(Effect.provide(liveWith(launcher))))
  })
}

/** Writes a manifest file next to the probe; returns its path. */
const writeManifest = (dir: string, name: string, lines: ReadonlyArray<string>) => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, lines.join("\n"))
  return file
}

describe("manifests and the doctor (real processes)", () => {
  afterEach(noChildrenLeft)

  it.live("a manifest allow-listing an injection variable without the mark is rejected at load, naming the field", () =>
    Effect.gen(function*() {
      const { dir } = yield* scripts
      const toml = writeManifest(dir, "probe.toml", [`name = "probe"`, `version = "1"`, `executable = "probe.mjs"`, `allowed_env_vars = ["LD_PRELOAD"]`])
      const tomlError = yield* Effect.flip(PluginManifest.load(toml))
      assert.strictEqual(tomlError.reason._tag, "Invalid")
      assert.include(tomlError.message, "`allowed_env_vars`: `LD_PRELOAD` is a loader/interpreter injection variable; list it in `unsafe_env_vars`")
      const json = writeManifest(dir, "probe.json", [JSON.stringify({ name: "probe", version: "1", executable: "probe.mjs", allowedEnvVars: ["NODE_OPTIONS"] })])
      const jsonError = yield* Effect.flip(PluginManifest.load(json))
      assert.include(jsonError.message, "`allowedEnvVars`: `NODE_OPTIONS` is a loader/interpreter injection variable; list it in `unsafeEnvVars`")
      const badName = writeManifest(dir, "bad.toml", [`name = "bad"`, `version = "1"`, `executable = "probe.mjs"`, `allowed_env_vars = ["toString()"]`])
      const badNameError = yield* Effect.flip(PluginManifest.load(badName))
      assert.include(badNameError.message, "`allowed_env_vars[0]`: expected an environment variable name")
    }).pipe(Effect.provide(live)))

  it.live("a marked manifest passes the variable, and the doctor shows the mark and the interpreter the host resolved", () =>
    Effect.gen(function*() {
      const { dir, nodeOptions } = yield* scripts
      fs.copyFileSync(fixture("rpc-plugin.mjs"), path.join(dir, "rpc-plugin.mjs"))
      const file = writeManifest(dir, "probe.toml", [
        `name = "probe"`,
        `version = "1"`,
        `executable = "rpc-plugin.mjs"`,
        `allowed_env_vars = ["NODE_OPTIONS"]`,
        `unsafe_env_vars = ["NODE_OPTIONS"]`
      ])
      const manifest = yield* PluginManifest.load(file)
      assert.deepStrictEqual(manifest.unsafeEnvVars, ["NODE_OPTIONS"])
      const manager = yield* PluginManager.make()
      const client = yield* manager.register(manifest, { hostEnv: { NODE_OPTIONS: nodeOptions, PATH: hostPath } })
      const env = yield* client.request("env")
      assert.deepStrictEqual(env, { NODE_OPTIONS: nodeOptions, INJECTED: "yes" })
      const [diagnostics] = yield* manager.diagnostics
      assert.isDefined(diagnostics)
      if (diagnostics === undefined) return
      const resolved = path.join(path.dirname(node), "node")
      assert.deepStrictEqual(diagnostics.environment, {
        unsafeEnvVars: ["NODE_OPTIONS"],
        interpreter: { shebang: "#!/usr/bin/env node", resolved }
      })
      const diagnosis = DoctorReport.PluginDiagnosis.fromDiagnostics(diagnostics, {
        server: GroupHealth.serverHealthOf("probe", diagnostics.health),
        groups: [],
        stderrTailLines: 0
      })
      const report = new DoctorReport.DoctorReport({ generatedAt: 0, plugins: [diagnosis], groups: [] })
      const table = DoctorReport.render(report)
      assert.include(table, "environment of probe: passes injection variables marked unsafe: NODE_OPTIONS")
      assert.include(table, `runs \`#!/usr/bin/env node\` as ${resolved} (resolved on the host's PATH; the plugin gets no PATH)`)
      const decoded = Schema.decodeUnknownSync(DoctorReport.DoctorReport)(JSON.parse(JSON.stringify(Schema.encodeSync(DoctorReport.DoctorReport)(report))))
      assert.deepStrictEqual(decoded.plugins[0]?.environment, diagnosis.environment)
    }).pipe(Effect.provide(live)))

  it.live("a client given an injection variable in code fails to start with a Spawn reason, unless its options mark it", () =>
    Effect.gen(function*() {
      const { nodeOptions } = yield* scripts
      const source = { name: "probe", executable: node, args: [fixture("rpc-plugin.mjs")] }
      const unmarked = yield* PluginClient.make(source, { env: { NODE_OPTIONS: nodeOptions } })
      const error = yield* Effect.flip(unmarked.start)
      assert.strictEqual(error.reason._tag, "Spawn")
      assert.include(error.message, "`env`: `NODE_OPTIONS` is a loader/interpreter injection variable")
      const marked = yield* PluginClient.make(source, { env: { NODE_OPTIONS: nodeOptions }, unsafeEnvVars: ["NODE_OPTIONS"] })
      assert.deepStrictEqual(yield* marked.request("env"), { NODE_OPTIONS: nodeOptions, INJECTED: "yes" })
    }).pipe(Effect.provide(live)))
})

describe("the doctor's report", () => {
  it("an older report without `environment` decodes with an empty one, and renders no environment line", () => {
    const report = Schema.decodeUnknownSync(DoctorReport.DoctorReport)({
      generatedAt: 0,
      plugins: [diagnosisFields("p")],
      groups: []
    })
    assert.deepStrictEqual(report.plugins[0]?.environment, { unsafeEnvVars: [] })
    assert.notInclude(DoctorReport.render(report), "environment of")
  })

  it("a start that would fail is said under the table", () => {
    const diagnosis = new DoctorReport.PluginDiagnosis(
      diagnosisFields("p", { environment: { unsafeEnvVars: [], problem: "the interpreter `python9` is not on the host's PATH" } })
    )
    const table = DoctorReport.render(new DoctorReport.DoctorReport({ generatedAt: 0, plugins: [diagnosis], groups: [] }))
    assert.include(table, "environment of p: will not start: the interpreter `python9` is not on the host's PATH")
  })
})
