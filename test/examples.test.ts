/**
 * The bundled examples, kept from rotting: every example program runs to exit 0 with the output
 * it promises, every example plugin works through the library (discovered with a verified
 * checksum, then called through `PluginManager`, `PluginClient` and `PollerRouter`, over stdio
 * and over NATS), and the TestClock spec of `examples/testing-your-host.ts` shows how users test
 * their own host without real processes.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Broker from "../src/Broker.ts"
import * as Handshake from "../src/Handshake.ts"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as NatsBroker from "../src/NatsBroker.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginMethod from "../src/PluginMethod.ts"
import * as Poller from "../src/Poller.ts"
import * as PollerRouter from "../src/PollerRouter.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import * as SecretStore from "../examples/testing-your-host.ts"
import * as CalendarHandlers from "../examples/plugins/calendar/handlers.ts"
import { skipNats, spawnNode, startNatsServer } from "./support/nats.ts"
import { eventually, isAlive, live, liveChildren } from "./support/processes.ts"
import { bytes, text, tickInput as anyTick } from "./support/ticks.ts"

const root = path.resolve(import.meta.dirname, "..")
const examplesDir = path.join(root, "examples")
const pluginDir = path.join(examplesDir, "plugins")

/**
 * The host environment the plugins pick their allow-listed variables from, with the folder of the
 * Node running the tests first on PATH, so `#!/usr/bin/env node` plugins run on this Node (24).
 */
const hostEnv: Readonly<Record<string, string | undefined>> = {
  ...process.env,
  PATH: [path.dirname(process.execPath), process.env.PATH].join(path.delimiter)
}

const fast = (input: LifetimePolicy.Input = {}) => LifetimePolicy.makeUnsafe({ shutdownGrace: "1 second", drainTimeout: "1 second", ...input })

/** The discovered, verified manifest of one bundled plugin. */
const bundled = (name: string) =>
  Effect.gen(function*() {
    const found = yield* PluginManifest.discover(pluginDir)
    const valid = found.find((d): d is PluginManifest.DiscoveredValid => d._tag === "Valid" && d.manifest.name === name)
    if (valid === undefined) return yield* Effect.die(new Error(`no valid bundled manifest for ${name}: ${JSON.stringify(found)}`))
    return valid
  })

const noChildLeft = async () => {
  const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
  assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
}

// ---------------------------------------------------------------------------------------------
// example programs
// ---------------------------------------------------------------------------------------------

interface Run {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `node <args…>` in the project root like a user would, bounded in time. */
const runNode = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env, timeoutMs = 20_000): Promise<Run> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8")
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`node ${args.join(" ")} did not finish within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`))
    }, timeoutMs)
    child.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })

const assertSucceeded = (run: Run, what: string) =>
  assert.strictEqual(run.code, 0, `${what} exited with ${run.code ?? run.signal}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`)

const assertLines = (output: string, expected: ReadonlyArray<string>) => {
  for (const line of expected) assert.include(output, line)
}

/** Every example program this suite runs (quickstart.ts is `npm start`, run by the CLI tests). */
const testedPrograms = ["manager-layer.ts", "pollers.ts", "remote-calendar.ts", "testing-your-host.ts", "typed-methods.ts"]

describe("example programs (node examples/<file>.ts)", () => {
  afterEach(noChildLeft)

  it("every example program is run by this suite", () => {
    const programs = fs.readdirSync(examplesDir).filter((f) => f.endsWith(".ts") && f !== "quickstart.ts").sort()
    assert.deepStrictEqual(programs, testedPrograms)
  })

  it("manager-layer.ts: a Layer with PluginManager + PluginHealth starts a group, calls, restarts, prints the doctor and stops every plugin", async () => {
    const run = await runNode(["examples/manager-layer.ts"])
    assertSucceeded(run, "manager-layer.ts")
    assertLines(run.stdout, [
      "registered echo, flaky, secrets; running: 0",
      "startup of group core: Healthy - all 3 servers healthy",
      "echo → {\"hello\":\"world\"}",
      "sum [1,2,3,4] → 10 (added up by the host for the plugin)",
      "greet → \"hello, Ada\"",
      "secrets lists {\"keys\":[\"api_token\",\"db_password\",\"locked\",\"smtp_password\"]}",
      "flaky crashed: exit code 3",
      "group core after the crash: Degraded",
      "group core now: Healthy - all 3 servers healthy",
      "group core: Healthy - all 3 plugins healthy (echo Healthy, secrets Healthy, flaky Healthy)",
      "all plugins stopped; bye"
    ])
    const restart = run.stdout.match(/flaky restarted on the next call \(pid (\d+) → (\d+)\); crashes in window: 1/)
    assert.isNotNull(restart, run.stdout)
    assert.notStrictEqual(restart?.[1], restart?.[2])
    // The doctor table: one row per plugin, checksums verified, pids of live processes.
    const rows = run.stdout.split("\n").filter((line) => /^(echo|flaky|secrets)\s+Running\s+Healthy\s+\d+/.test(line))
    assert.strictEqual(rows.length, 3, run.stdout)
    for (const row of rows) assert.include(row, "verified")
    const pids = rows.map((row) => Number(row.split(/\s+/)[3]))
    // Releasing the layer stopped them all: none outlived the program.
    for (const pid of [...pids, Number(restart?.[1])]) assert.isFalse(isAlive(pid), `plugin pid ${pid} is still alive`)
  })

  it("typed-methods.ts: PluginMethod Schemas and catchReason on the secrets plugin", async () => {
    const run = await runNode(["examples/typed-methods.ts"])
    assertSucceeded(run, "typed-methods.ts")
    assertLines(run.stdout, [
      "keys: api_token, db_password, locked, smtp_password",
      "got <redacted> (28 characters, redacted when printed)",
      "no_such_key → None (not-found handled)",
      "locked → needs-credential: the secret `locked` needs an unlock credential — data {\"kind\":\"needs-credential\"",
      "empty key → InvalidParams: plugin `secrets` cannot send `secret_source.get`",
      "list decoded with the wrong Schema → UnexpectedPayload for secret_source.list",
      "plugin errors are not crashes: state Running, crashes 0, spawns 1"
    ])
    assert.notInclude(run.stdout, "correct-horse-battery-staple", "a secret value was printed")
  })

  it("testing-your-host.ts: the user host runs against the real secrets plugin", async () => {
    const run = await runNode(["examples/testing-your-host.ts"])
    assertSucceeded(run, "testing-your-host.ts")
    assertLines(run.stdout, [
      "db_password: found (<redacted>)",
      "no_such_key: not found",
      "locked: cannot read secret `locked` (PluginError): plugin `secrets` returned an error: needs-credential"
    ])
  })

  it("pollers.ts: ephemeral and long-lived pollers behind a PollerRouter, cursors carried, errors classified", async () => {
    const env = { ...process.env }
    delete env.NATS_URL
    const run = await runNode(["examples/pollers.ts"], env)
    assertSucceeded(run, "pollers.ts")
    assertLines(run.stdout, [
      "registered calendar for calendar (long_lived: one long-lived process, over stdio)",
      "registered rss-poller for rss (ephemeral: one process per tick)",
      "rss tick 1: saw 3, dispatched 2, cursor \"post-3\", next tick in 1s",
      "rss tick 2: saw 3, dispatched 1, cursor \"post-6\", next tick in 1s",
      "rss tick 3: saw 1, dispatched 1, cursor \"post-7\", next tick in 10m",
      "calendar tick 1: saw 2, dispatched 2, cursor \"evt-2\", next tick in 5s",
      "calendar tick 3: saw 1, dispatched 0, cursor \"evt-5\", next tick in 5m",
      "job old-feed stopped for good: feed `gone` answered 410 Gone",
      "job typo needs a config fix: invalid poll_tick params"
    ])
  })

  it("plugin-host checksum --check: every bundled checksum is up to date", async () => {
    const run = await runNode(["src/cli/main.ts", "checksum", "--check", "examples/plugins"])
    assertSucceeded(run, "plugin-host checksum --check examples/plugins")
    assertLines(run.stdout, [
      "ok       examples/plugins/echo/echo.toml",
      "ok       examples/plugins/secrets/devboy-source-secrets.toml",
      "every checksum is up to date"
    ])
  })

  it("plugin-host checksum --write rewrites a stale checksum, keeping the manifest's comments, and the result verifies", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-checksums-"))
    try {
      fs.cpSync(path.join(pluginDir, "flaky"), path.join(dir, "flaky"), { recursive: true })
      fs.appendFileSync(path.join(dir, "flaky", "flaky.mjs"), "\n// changed\n")
      const before = await Effect.runPromise(PluginManifest.discover(dir).pipe(Effect.provide(live)))
      assert.deepStrictEqual(before.map((d) => d._tag === "Rejected" ? d.error.reason._tag : d._tag), ["ChecksumMismatch"])

      const check = await runNode(["src/cli/main.ts", "checksum", "--check", dir])
      assert.strictEqual(check.code, 1, check.stdout + check.stderr)
      assert.include(check.stderr, "flaky/flaky.toml: checksum is")

      const update = await runNode(["src/cli/main.ts", "checksum", "--write", dir])
      assertSucceeded(update, "plugin-host checksum --write DIR")
      assert.match(update.stdout, /^updated {2}\S*flaky\/flaky\.toml {2}[0-9a-f]{64}$/m)
      const manifest = fs.readFileSync(path.join(dir, "flaky", "flaky.toml"), "utf8")
      assert.include(manifest, "# The `flaky` example plugin")
      const after = await Effect.runPromise(PluginManifest.discover(dir).pipe(Effect.provide(live)))
      assert.deepStrictEqual(after.map((d) => d._tag), ["Valid"])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

// ---------------------------------------------------------------------------------------------
// example plugins, through the library
// ---------------------------------------------------------------------------------------------

const Pid = Schema.Struct({ pid: Schema.Number })
const pidOf = (value: unknown) => Schema.decodeUnknownSync(Pid)(value).pid

/** A tick at 08:00 (the calendar's events are read relative to it). */
const tickInput = (config: unknown, cursor?: Uint8Array): PollerRouter.TickInput => ({
  ...anyTick(config, cursor),
  agentId: "agent-1",
  now: new Date("2026-11-23T08:00:00Z")
})

describe("example plugins (real processes)", () => {
  afterEach(noChildLeft)

  it.live("every bundled manifest is valid and declares the checksum of its executable", () =>
    Effect.gen(function*() {
      const found = yield* PluginManifest.discover(pluginDir)
      const invalid = found.flatMap((d) => d._tag === "Rejected" ? [d.error.message] : [])
      assert.deepStrictEqual(invalid, [], "every manifest must verify; run `npm start -- checksum --write examples/plugins`")
      const valid = found.filter((d): d is PluginManifest.DiscoveredValid => d._tag === "Valid")
      assert.deepStrictEqual(valid.map((d) => d.manifest.name), ["calendar", "echo", "flaky", "rss-poller", "secrets"])
      for (const d of valid) {
        // In `checksum_sha256`, or (a script importing its neighbours, verified in place) in `checksums`.
        const declared = d.manifest.checksumSha256 ?? d.manifest.checksums?.[path.relative(d.dir, d.executablePath)]
        assert.strictEqual(declared, yield* PluginManifest.checksum(d.executablePath), d.path)
        assert.isTrue(d.executablePath.startsWith(d.dir + path.sep), `${d.path}: the executable lives next to its manifest`)
        fs.accessSync(d.executablePath, fs.constants.X_OK)
        assert.isTrue(fs.readFileSync(d.executablePath, "utf8").startsWith("#!/usr/bin/env "), `${d.executablePath} has a shebang`)
        assert.include(d.manifest.allowedEnvVars, "PATH", `${d.path}: the shebang needs PATH`)
      }
      const byName = new Map(valid.map((d) => [d.manifest.name, d.manifest]))
      assert.deepInclude(byName.get("rss-poller")?.poller, { kinds: ["rss"], lifecycle: "ephemeral" })
      assert.deepInclude(byName.get("calendar")?.poller, {
        kinds: ["calendar"],
        lifecycle: "long_lived",
        brokerTopicPrefix: CalendarHandlers.topicPrefix
      })
      assert.strictEqual(path.basename(valid.find((d) => d.manifest.name === "secrets")?.path ?? ""), "devboy-source-secrets.toml")
    }).pipe(Effect.provide(live)))

  it.live("echo through PluginManager.discover: echo, a plugin→host call, a log notification, health, tools, a crash", () =>
    Effect.gen(function*() {
      const manager = yield* PluginManager.make()
      const events = yield* manager.subscribe
      const outcomes = yield* manager.discover(pluginDir, {
        policy: fast(),
        hostEnv,
        handshake: Handshake.initialize(),
        hostHandlers: {
          "host.sum": (params) =>
            Array.isArray(params) && params.every((n) => typeof n === "number")
              ? Effect.succeed(params.reduce((a, b) => a + b, 0))
              : Effect.fail(JsonRpc.error(JsonRpc.ErrorCode.InvalidParams, "numbers please"))
        }
      })
      assert.strictEqual(outcomes.length, 5)
      assert.deepStrictEqual([...(yield* manager.ids)].sort(), ["calendar", "echo", "flaky", "rss-poller", "secrets"])
      assert.deepStrictEqual(liveChildren(), [], "discovery spawns nothing")

      assert.deepStrictEqual(yield* manager.call("echo", "echo", { hello: ["world"] }), { hello: ["world"] })
      assert.strictEqual(yield* manager.call("echo", "sum", [1, 2, 3, 4]), 10)
      const refused = yield* manager.call("echo", "sum", "not numbers").pipe(Effect.flip)
      assert.instanceOf(refused.reason, PluginClientError.PluginError)
      assert.strictEqual(yield* manager.call("echo", "greet", "Ada"), "hello, Ada")
      const log = yield* events.pipe(
        Stream.filter((e) => e._tag === "Plugin" && e.id === "echo" && e.event._tag === "Log"),
        Stream.runHead,
        Effect.timeout("2 seconds")
      )
      assert.isTrue(Option.isSome(log))
      if (Option.isSome(log) && log.value._tag === "Plugin" && log.value.event._tag === "Log") {
        assert.strictEqual(log.value.event.message, "greeting someone")
        assert.deepStrictEqual(log.value.event.meta, { who: "Ada" })
      }
      const health = Schema.decodeUnknownSync(Schema.Struct({ ok: Schema.Boolean, pid: Schema.Number }))(yield* manager.call("echo", "health"))
      assert.isTrue(health.ok)
      assert.deepStrictEqual(liveChildren(), [health.pid], "only echo was spawned")
      assert.deepStrictEqual(yield* manager.call("echo", "tools/list"), { tools: [{ name: "echo" }, { name: "sum" }, { name: "greet" }] })
      const [diagnostics] = (yield* manager.diagnostics).filter((d) => d.id === "echo")
      assert.includeMembers([...(diagnostics?.health.supportedMethods ?? [])], ["echo", "sum", "greet", "crash", "health", "tools/list"])

      const crash = yield* manager.call("echo", "crash").pipe(Effect.flip)
      assert.instanceOf(crash.reason, PluginClientError.Exited)
      if (crash.reason instanceof PluginClientError.Exited) assert.strictEqual(crash.reason.code, 7)
      assert.isFalse(isAlive(health.pid))
    }).pipe(Effect.provide(live)))

  it.live("secrets: a strictly serial secret source with the secret_source.init handshake and {kind} errors", () =>
    Effect.gen(function*() {
      const found = yield* bundled("secrets")
      const client = yield* PluginClient.make(found.manifest, {
        hostEnv: { ...hostEnv, SECRETS_PLUGIN_OVERRIDES: JSON.stringify({ db_password: "from-the-env", extra: "added" }) },
        policy: fast({ maxConcurrentRequests: 1 }),
        handshake: Handshake.secretSource({ vault: "example" }),
        shutdownRequest: "shutdown"
      })
      const GetSecret = PluginMethod.make("secret_source.get", {
        params: Schema.Struct({ key: Schema.String }),
        result: Schema.Struct({ value: Schema.String })
      })
      const ListSecrets = PluginMethod.make("secret_source.list", {
        params: Schema.Struct({}),
        result: Schema.Struct({ keys: Schema.Array(Schema.String) })
      })
      // Ten calls at once: the serial client feeds them one by one and every answer matches.
      const keys = ["api_token", "db_password", "extra", "smtp_password", "api_token", "db_password", "extra", "smtp_password", "api_token", "extra"]
      const values = yield* Effect.forEach(keys, (key) => client.call(GetSecret, { key }), { concurrency: "unbounded" })
      assert.deepStrictEqual(values.map((v) => v.value), [
        "tok_example_0123456789",
        "from-the-env",
        "added",
        "hunter2",
        "tok_example_0123456789",
        "from-the-env",
        "added",
        "hunter2",
        "tok_example_0123456789",
        "added"
      ])
      assert.deepStrictEqual((yield* client.call(ListSecrets, {})).keys, ["api_token", "db_password", "extra", "locked", "smtp_password"])

      const missing = yield* client.call(GetSecret, { key: "nope" }).pipe(Effect.flip)
      assert.instanceOf(missing.reason, PluginClientError.PluginError)
      if (missing.reason instanceof PluginClientError.PluginError) {
        assert.deepStrictEqual(missing.reason.data, { kind: "not-found", detail: "no secret named `nope`" })
      }
      const locked = yield* client.call(GetSecret, { key: "locked" }).pipe(
        Effect.map(() => "unlocked?!"),
        Effect.catchReason("PluginClientError", "PluginError", (reason) => Effect.succeed(JSON.stringify(reason.data)))
      )
      assert.strictEqual(locked, JSON.stringify({ kind: "needs-credential", detail: "the secret `locked` needs an unlock credential" }))
      const unknown = yield* client.request("nope").pipe(Effect.flip)
      assert.include(unknown.message, "Method not found: nope")

      const health = yield* client.health
      assert.strictEqual(health.totalCrashes, 0, "plugin errors are not crashes")
      assert.strictEqual(health.spawns, 1)
      const pid = health.pid ?? -1
      assert.deepStrictEqual(liveChildren(), [pid])
      yield* client.shutdown
      assert.isFalse(isAlive(pid))
    }).pipe(Effect.provide(live)))

  it.live("flaky: a crash, the restart on the next call, the restart cap, and clearDisabled", () =>
    Effect.gen(function*() {
      const found = yield* bundled("flaky")
      const client = yield* PluginClient.make(found.manifest, {
        hostEnv,
        policy: fast(),
        handshake: Handshake.initialize()
      })
      const first = pidOf(yield* client.request("pid"))
      const crash = yield* client.request("crash", { code: 5, why: "test" }).pipe(Effect.flip)
      assert.instanceOf(crash.reason, PluginClientError.Exited)
      assert.include(crash.message, "exited with code 5")
      assert.include(crash.message, "flaky: crashing (test)")
      assert.strictEqual((yield* client.state)._tag, "Recovering")

      const second = pidOf(yield* client.request("pid"))
      assert.notStrictEqual(second, first, "the next call spawned a new process")
      assert.isFalse(isAlive(first))
      assert.strictEqual((yield* client.health).crashesInWindow, 1)

      yield* client.request("crash").pipe(Effect.flip)
      const tripped = yield* client.request("crash").pipe(Effect.flip)
      assert.instanceOf(tripped.reason, PluginClientError.RestartCapExceeded)
      assert.strictEqual(tripped.message, "plugin `flaky` exceeded restart cap (3 restarts in 1 min); marking disabled")
      assert.strictEqual((yield* client.state)._tag, "Disabled")
      const disabled = yield* client.request("echo", 1).pipe(Effect.flip)
      assert.instanceOf(disabled.reason, PluginClientError.Disabled)
      assert.deepStrictEqual(liveChildren(), [], "a disabled plugin is not spawned")

      yield* client.clearDisabled
      assert.strictEqual((yield* client.state)._tag, "Idle")
      assert.strictEqual(yield* client.request("echo", "back"), "back")
      const health = yield* client.health
      assert.strictEqual(health.crashesInWindow, 0)
      assert.strictEqual(health.totalCrashes, 3)
      assert.strictEqual(health.spawns, 4)
    }).pipe(Effect.provide(live)))

  it.live("flaky: crashing on start twice (counter file) is two failed starts, then the plugin runs; the manager reports crashed/restarted", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-flaky-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const stateFile = path.join(dir, "crashes")
      const found = yield* bundled("flaky")
      const manager = yield* PluginManager.make()
      const events = yield* manager.subscribe
      yield* manager.register(found.manifest, {
        hostEnv: { ...hostEnv, FLAKY_CRASH_ON_START: "2", FLAKY_STATE_FILE: stateFile },
        policy: fast(),
        handshake: Handshake.initialize()
      })
      for (const n of [1, 2]) {
        const error = yield* manager.start("flaky").pipe(Effect.flip)
        assert.instanceOf(error.reason, PluginClientError.InitFailed)
        assert.include(error.message, `flaky: crashing on start (${n} of 2)`)
      }
      assert.strictEqual(fs.readFileSync(stateFile, "utf8"), "2")
      yield* manager.start("flaky")
      assert.isTrue(yield* manager.isRunning("flaky"))
      assert.strictEqual(yield* manager.call("flaky", "echo", "up"), "up")
      const [diagnostics] = yield* manager.diagnostics
      assert.strictEqual(diagnostics?.health.crashesInWindow, 2)
      assert.deepStrictEqual(diagnostics?.envVarNames, ["PATH", "FLAKY_CRASH_ON_START", "FLAKY_STATE_FILE"])
      const tags = yield* events.pipe(
        Stream.filter((e) => e._tag !== "Plugin"),
        Stream.take(3),
        Stream.runCollect,
        Effect.timeout("2 seconds")
      )
      assert.deepStrictEqual(tags.map((e) => e._tag), ["WorkerCrashed", "WorkerCrashed", "WorkerRestarted"])
    }).pipe(Effect.provide(live)))

  it.live("rss-poller: ephemeral ticks through PollerRouter, one process per tick, cursor carried, errors classified", () =>
    Effect.gen(function*() {
      const found = yield* bundled("rss-poller")
      const router = yield* PollerRouter.make
      yield* router.register(found.manifest, { hostEnv })
      const handle = Option.getOrThrow(yield* router.handleForKind("rss"))
      assert.strictEqual(handle.lifecycle, "ephemeral")

      const cursors: Array<string | undefined> = []
      let cursor: Uint8Array | undefined
      for (const expected of [{ seen: 3, dispatched: 2 }, { seen: 3, dispatched: 1 }, { seen: 1, dispatched: 1 }]) {
        const ack = yield* router.tick("rss", tickInput({ tags: ["release"] }, cursor))
        assert.deepStrictEqual(ack.metrics, { itemsSeen: expected.seen, itemsDispatched: expected.dispatched })
        assert.deepStrictEqual(liveChildren(), [], "the tick's process is reaped with the tick")
        cursors.push(text(ack.nextCursor))
        cursor = ack.nextCursor
      }
      assert.deepStrictEqual(cursors, ["post-3", "post-6", "post-7"])
      const caughtUp = yield* router.tick("rss", tickInput({}, cursor))
      assert.strictEqual(caughtUp.nextCursor, undefined, "nothing new: keep the cursor")
      assert.strictEqual(caughtUp.metrics.itemsSeen, 0)
      assert.strictEqual(Duration.toSeconds(caughtUp.nextIntervalHint ?? Duration.zero), 600)

      const gone = yield* router.tick("rss", tickInput({ feed: "gone" })).pipe(Effect.flip)
      assert.instanceOf(gone.reason, Poller.Permanent)
      assert.strictEqual(gone.plugin, "rss-poller")
      const badBatch = yield* router.tick("rss", tickInput({ batch: 0 })).pipe(Effect.flip)
      assert.instanceOf(badBatch.reason, Poller.Config)
      const badCursor = yield* router.tick("rss", tickInput({}, bytes("post-99"))).pipe(Effect.flip)
      assert.instanceOf(badCursor.reason, Poller.Config)
      assert.include(badCursor.message, "post-99")
    }).pipe(Effect.provide(live)))

  it.live("calendar over stdio: long-lived ticks through PollerRouter go to one process that keeps its state", () =>
    Effect.gen(function*() {
      const found = yield* bundled("calendar")
      const router = yield* PollerRouter.make
      yield* router.register(found.manifest, { hostEnv, policy: fast() })
      const first = yield* router.tick("calendar", tickInput({}))
      assert.strictEqual(text(first.nextCursor), "evt-2")
      assert.deepStrictEqual(first.metrics, { itemsSeen: 2, itemsDispatched: 2 }, "two events start within 24 h of now")
      const [pid] = liveChildren()
      const second = yield* router.tick("calendar", tickInput({ batch: 5 }, first.nextCursor))
      assert.strictEqual(text(second.nextCursor), "evt-5")
      assert.deepStrictEqual(second.metrics, { itemsSeen: 3, itemsDispatched: 0 })
      assert.strictEqual(Duration.toSeconds(second.nextIntervalHint ?? Duration.zero), 300)
      assert.deepStrictEqual(liveChildren(), [pid], "the same process served both ticks")

      const deleted = yield* router.tick("calendar", tickInput({ calendar_id: "deleted" })).pipe(Effect.flip)
      assert.instanceOf(deleted.reason, Poller.Permanent)
      const badCursor = yield* router.tick("calendar", tickInput({}, bytes("evt-99"))).pipe(Effect.flip)
      assert.instanceOf(badCursor.reason, Poller.Config)
      assert.deepStrictEqual(liveChildren(), [pid], "a plugin error is not a crash")
    }).pipe(Effect.provide(live)))
})

describe.skipIf(skipNats)("calendar over NATS (real nats-server)", () => {
  afterEach(noChildLeft)

  it.live("the calendar's NATS entry serves the same handlers; PollerRouter with NatsBroker.layer ticks it over plugins.calendar.tick", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const worker = yield* spawnNode(path.join(pluginDir, "calendar", "calendar-nats.ts"), { NATS_URL: server.url })
      yield* worker.waitForStderr(`serving ${CalendarHandlers.topicPrefix}.tick and ${CalendarHandlers.topicPrefix}.call`, 10_000)
      const found = yield* bundled("calendar")

      yield* Effect.gen(function*() {
        const router = yield* PollerRouter.PollerRouter
        yield* router.register(found.manifest, { hostEnv })
        const first = yield* router.tick("calendar", tickInput({}))
        const second = yield* router.tick("calendar", tickInput({}, first.nextCursor))
        assert.deepStrictEqual([text(first.nextCursor), text(second.nextCursor)], ["evt-2", "evt-4"])
        assert.deepStrictEqual(first.metrics, { itemsSeen: 2, itemsDispatched: 2 })
        const deleted = yield* router.tick("calendar", tickInput({ calendar_id: "deleted" })).pipe(Effect.flip)
        assert.instanceOf(deleted.reason, Poller.Permanent)
        assert.include(deleted.message, "calendar `deleted` no longer exists")
        // The router spawned nothing: the worker process answered, and counted the ticks.
        assert.deepStrictEqual(liveChildren().sort(), [server.pid, worker.pid].sort())
        const health = yield* Broker.requestJson(
          `${CalendarHandlers.topicPrefix}.call`,
          { jsonrpc: "2.0", id: 1, method: "health" },
          "3 seconds"
        )
        assert.deepStrictEqual(health, { jsonrpc: "2.0", id: 1, result: { ok: true, ticks: 2, pid: worker.pid } })
      }).pipe(
        Effect.provide(PollerRouter.layer.pipe(Layer.provideMerge(NatsBroker.layer({ servers: server.url }))))
      )

      // The pollers example against the same worker: its calendar ticks go over NATS.
      const run = yield* Effect.promise(() => runNode(["examples/pollers.ts"], { ...process.env, NATS_URL: server.url }))
      assertSucceeded(run, "NATS_URL=… pollers.ts")
      assertLines(run.stdout, [
        "registered calendar for calendar (long_lived: over NATS, plugins.calendar.tick)",
        "calendar tick 1: saw 2, dispatched 2, cursor \"evt-2\", next tick in 5s",
        "job typo needs a config fix"
      ])

      yield* worker.kill("SIGTERM")
      yield* worker.exited.pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(worker.child.exitCode, 0, "the NATS worker exits 0 on SIGTERM")
    }).pipe(Effect.provide(live)))
})

describe.skipIf(skipNats)("the calendar on two machines (real nats-server, two worker processes)", () => {
  afterEach(noChildLeft)

  const doctor = (url: string) => runNode(["src/cli/main.ts", "doctor", "--nats", url, "--dir", "examples/remote-plugins"])
  const instanceLines = (output: string) => output.match(/^ {2}instance [0-9a-f-]{36} v0\.1\.0: ping /gm)?.length ?? 0

  it.live("remote-calendar.ts calls the calendar served by two workers through a [remote] manifest; doctor shows both instances, then one", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const workers = yield* Effect.forEach([1, 2], () => spawnNode(path.join(pluginDir, "calendar", "calendar-nats.ts"), { NATS_URL: server.url }))
      for (const worker of workers) yield* worker.waitForStderr(`serving ${CalendarHandlers.topicPrefix}.tick`, 10_000)

      const run = yield* Effect.promise(() => runNode(["examples/remote-calendar.ts"], { ...process.env, PLUGIN_HOST_NATS_SERVERS: server.url }))
      assertSucceeded(run, "PLUGIN_HOST_NATS_SERVERS=… remote-calendar.ts")
      assertLines(run.stdout, [
        "registered calendar (remote: NATS service calendar, subject plugins.calendar.call)",
        "20 calls answered by 2 instances",
        "tick: saw 2 events, 2 reminders, next cursor \"evt-2\"",
        "remote calendar (NATS service calendar): Healthy - 2 instances (2 required)"
      ])
      const pids = /\(pids (\d+), (\d+)\)/.exec(run.stdout)
      assert.sameMembers([Number(pids?.[1]), Number(pids?.[2])], workers.map((w) => w.pid), "the worker processes answered")
      assert.strictEqual(instanceLines(run.stdout), 2, run.stdout)

      const both = yield* Effect.promise(() => doctor(server.url))
      assertSucceeded(both, "plugin-host doctor --nats")
      assert.include(both.stdout, "remote calendar (NATS service calendar): Healthy - 2 instances (2 required)")
      assert.strictEqual(instanceLines(both.stdout), 2, both.stdout)

      const [first] = workers
      if (first !== undefined) {
        yield* first.kill("SIGTERM")
        yield* first.exited
      }
      const one = yield* Effect.promise(() => doctor(server.url))
      assertSucceeded(one, "plugin-host doctor --nats, one worker stopped (degraded is not failed)")
      assert.include(one.stdout, "remote calendar (NATS service calendar): Degraded - 1 of 2 required instances")
      assert.strictEqual(instanceLines(one.stdout), 1, one.stdout)
    }).pipe(Effect.provide(live)), 90_000)

  it("remote-calendar.ts without PLUGIN_HOST_NATS_SERVERS says what to set and exits 2", async () => {
    const env = { ...process.env }
    delete env.PLUGIN_HOST_NATS_SERVERS
    const run = await runNode(["examples/remote-calendar.ts"], env)
    assert.strictEqual(run.code, 2, run.stdout + run.stderr)
    assert.include(run.stderr, "set PLUGIN_HOST_NATS_SERVERS")
  })
})

// ---------------------------------------------------------------------------------------------
// testing your own host (examples/testing-your-host.ts): TestClock, no real process
// ---------------------------------------------------------------------------------------------

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> => typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * A scripted secret source for the in-memory spawner: answers `secret_source.init` and
 * `secret_source.get {key}` (`{value}`, or a `not-found` error object), one line at a time.
 */
const fakeSecretSource = (secrets: Readonly<Record<string, string>>): InMemorySpawner.Behaviour => (proc) =>
  Stream.runForEach(proc.lines, (line) => {
    let message: unknown
    try {
      message = JSON.parse(line)
    } catch {
      return proc.writeStderr(`not JSON: ${line}\n`)
    }
    if (!isRecord(message) || !("id" in message)) return Effect.void
    const reply = (body: object) => proc.write(JSON.stringify({ jsonrpc: "2.0", id: message.id, ...body }))
    const key = isRecord(message.params) ? message.params.key : undefined
    switch (message.method) {
      case "secret_source.init":
        return reply({ result: { ok: true } })
      case "secret_source.get":
        return typeof key === "string" && Object.hasOwn(secrets, key)
          ? reply({ result: { value: secrets[key] } })
          : reply({ error: { kind: "not-found", detail: `no secret named ${String(key)}` } })
      default:
        return reply({ error: { code: -32601, message: "Method not found" } })
    }
  }).pipe(Effect.as(0))

const methodOf = (line: string) => Schema.decodeUnknownSync(Schema.fromJsonString(Schema.Struct({ method: Schema.String })))(line).method

/** The user's store over an in-memory spawner whose `secret-source` runs `behaviour`. */
const storeWith = (behaviour: InMemorySpawner.Behaviour) =>
  SecretStore.layer({ name: "secrets", executable: "secret-source" }).pipe(
    Layer.provideMerge(InMemorySpawner.layer({ "secret-source": behaviour }))
  )

const crashOnStart = InMemorySpawner.crashOnStart({ code: 1, stderr: "cannot reach the vault\n" })

describe("testing your own host (TestClock, in-memory spawner)", () => {
  it.effect("retries while the plugin cannot start: 1 s, then 2 s later, then it answers", () =>
    Effect.gen(function*() {
      const store = yield* SecretStore.SecretStore
      const read = yield* store.get("db").pipe(Effect.forkChild)
      yield* settle
      assert.strictEqual((yield* InMemorySpawner.spawns).length, 1)
      yield* TestClock.adjust("999 millis")
      yield* settle
      assert.strictEqual((yield* InMemorySpawner.spawns).length, 1, "no retry before 1 s")
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual((yield* InMemorySpawner.spawns).length, 2)
      yield* TestClock.adjust("1999 millis")
      yield* settle
      assert.isUndefined(read.pollUnsafe(), "the second retry waits 2 s")
      yield* TestClock.adjust("1 millis")
      const secret = yield* Fiber.join(read)
      assert.isTrue(Option.isSome(secret))
      if (Option.isSome(secret)) assert.strictEqual(Redacted.value(secret.value), "s3cret")
      const spawns = yield* InMemorySpawner.spawns
      assert.strictEqual(spawns.length, 3)
      assert.deepStrictEqual(spawns[2]?.stdinLines.map(methodOf), ["secret_source.init", "secret_source.get"])
    }).pipe(Effect.provide(storeWith(InMemorySpawner.sequence(crashOnStart, crashOnStart, fakeSecretSource({ db: "s3cret" }))))))

  it.effect("a missing secret is None at once, without a retry", () =>
    Effect.gen(function*() {
      const store = yield* SecretStore.SecretStore
      assert.isTrue(Option.isNone(yield* store.get("nope")))
      assert.strictEqual((yield* InMemorySpawner.spawns).length, 1)
    }).pipe(Effect.provide(storeWith(fakeSecretSource({ db: "s3cret" })))))

  it.effect("gives up at the plugin's restart cap instead of hammering a crash loop", () =>
    Effect.gen(function*() {
      const store = yield* SecretStore.SecretStore
      const read = yield* store.get("db").pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      yield* TestClock.adjust("2 seconds")
      const error = yield* Fiber.join(read)
      assert.instanceOf(error, SecretStore.SecretStoreError)
      assert.strictEqual(error.reason, "RestartCapExceeded")
      assert.include(error.message, "exceeded restart cap (3 restarts in 1 min)")
      yield* TestClock.adjust("1 hour")
      yield* settle
      assert.strictEqual((yield* InMemorySpawner.spawns).length, 3, "no attempt after the cap")
      const later = yield* store.get("db").pipe(Effect.flip)
      assert.strictEqual(later.reason, "Disabled")
    }).pipe(Effect.provide(storeWith(crashOnStart))))

  it.effect("the idle plugin is reaped after 60 s and the next read spawns it again", () =>
    Effect.gen(function*() {
      const store = yield* SecretStore.SecretStore
      yield* store.get("db")
      yield* TestClock.adjust("59 seconds")
      yield* settle
      assert.isTrue((yield* InMemorySpawner.spawns)[0]?.running)
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.isFalse((yield* InMemorySpawner.spawns)[0]?.running, "reaped after 60 s idle")
      assert.isTrue(Option.isSome(yield* store.get("db")))
      assert.strictEqual((yield* InMemorySpawner.spawns).length, 2)
    }).pipe(Effect.provide(storeWith(fakeSecretSource({ db: "s3cret" })))))
})
