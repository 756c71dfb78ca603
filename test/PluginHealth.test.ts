import * as NodeServices from "@effect/platform-node/NodeServices"
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import { TestClock } from "effect/testing"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import type * as PluginClient from "../src/PluginClient.ts"
import * as PluginHealth from "../src/PluginHealth.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as VerifiedExecutable from "../src/internal/verifiedExecutable.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { eventually, fixture, live, liveChildren, node } from "./support/processes.ts"
import { diagnosisFields, snapshot } from "./support/healthSnapshot.ts"

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

// ---------------------------------------------------------------------------------------------
// a scripted JSON-RPC plugin for the in-memory spawner
// ---------------------------------------------------------------------------------------------

type Reply = { readonly result: unknown } | { readonly error: unknown }
/** Answers one request; `n` counts the calls of this method in this process (1-based). */
type Handler = (n: number, proc: InMemorySpawner.FakeProcess) => Effect.Effect<Reply>

const ok = (result: unknown): Effect.Effect<Reply> => Effect.succeed({ result })
const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> => typeof u === "object" && u !== null && !Array.isArray(u)

/** A plugin answering each method with its handler (concurrently); others get -32601. */
const scripted = (handlers: Readonly<Record<string, Handler>>): InMemorySpawner.Behaviour => (proc) =>
  Effect.scoped(Effect.gen(function*() {
    const counts = new Map<string, number>()
    yield* Stream.runForEach(proc.lines, (line) => {
      const message: unknown = JSON.parse(line)
      if (!isRecord(message) || typeof message.method !== "string" || !("id" in message)) return Effect.void
      const method = message.method
      const n = (counts.get(method) ?? 0) + 1
      counts.set(method, n)
      const handler = Object.hasOwn(handlers, method) ? handlers[method] : undefined
      const reply = handler === undefined
        ? Effect.succeed<Reply>({ error: { code: -32601, message: `Method not found: ${method}` } })
        : handler(n, proc)
      return reply.pipe(
        Effect.flatMap((body) => proc.write(JSON.stringify({ jsonrpc: "2.0", id: message.id, ...body }))),
        Effect.forkScoped,
        Effect.asVoid
      )
    })
    return 0
  }))

interface Plugin {
  readonly id: string
  /** The fake executable (a key of the behaviours); defaults to the id. */
  readonly command?: string
  readonly options?: PluginManager.RegisterOptions
}

/** A manager over an in-memory spawner, with plugins registered, and the health service over it. */
const setup = (behaviours: InMemorySpawner.Behaviours, plugins: ReadonlyArray<Plugin>, config: PluginHealth.HealthConfig) =>
  Effect.gen(function*() {
    const fake = yield* InMemorySpawner.make(behaviours)
    const manager = yield* PluginManager.make().pipe(
      Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, fake.spawner)
    )
    for (const plugin of plugins) {
      yield* manager.register({ name: plugin.id, executable: plugin.command ?? plugin.id }, plugin.options)
    }
    const health = yield* PluginHealth.make(config).pipe(Effect.provideService(PluginManager.PluginManager, manager))
    return { fake, manager, health }
  })

const statuses = (check: PluginHealth.PluginHealthcheck) =>
  Object.fromEntries(check.servers.map((s) => [s.serverName, s.status]))
const serverOf = (check: PluginHealth.PluginHealthcheck, name: string) => {
  const server = check.servers.find((s) => s.serverName === name)
  assert.isDefined(server, `no server ${name}`)
  return server
}

// ---------------------------------------------------------------------------------------------
// pure rules
// ---------------------------------------------------------------------------------------------

const server = (serverName: string, status: PluginHealth.Status, capabilities: ReadonlyArray<string> = [], lastError?: string) =>
  new PluginHealth.ServerHealth({ serverName, status, capabilities: [...capabilities], ...(lastError === undefined ? {} : { lastError }) })

/** Every event but the group state changes, for specs about the other events. */
const notStateChange = (event: PluginHealth.HealthEvent): boolean => event._tag !== "GroupStateChanged"


describe("PluginHealth (aggregation rules)", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<PluginHealth.ServerHealth>, PluginHealth.Status, string]> = [
    ["no servers", [], "Failed", "no servers available"],
    ["all healthy", [server("a", "Healthy"), server("b", "Healthy")], "Healthy", "all 2 servers healthy"],
    ["all failed", [server("a", "Failed"), server("b", "Failed"), server("c", "Failed")], "Failed", "all 3 servers failed"],
    ["mixed", [server("a", "Healthy"), server("b", "Failed"), server("c", "Healthy")], "Degraded", "2 servers healthy, 1 servers failed"],
    ["a degraded server counts as up", [server("a", "Healthy"), server("b", "Degraded")], "Degraded", "2 servers healthy, 0 servers failed, 1 degraded"],
    ["degraded and failed", [server("a", "Degraded"), server("b", "Failed")], "Degraded", "1 servers healthy, 1 servers failed, 1 degraded"],
    ["all degraded is still up", [server("a", "Degraded"), server("b", "Degraded")], "Degraded", "2 servers healthy, 0 servers failed, 2 degraded"]
  ]
  for (const [name, servers, state, message] of cases) {
    it(`${name} → ${state}: "${message}"`, () => {
      const check = PluginHealth.aggregate("feature", servers, 1234)
      assert.strictEqual(check.state, state)
      assert.strictEqual(check.message, message)
      assert.strictEqual(check.pluginName, "feature")
      assert.strictEqual(check.lastCheck, 1234)
      assert.deepStrictEqual(check.servers, servers)
    })
  }

  it("degraded mode: tools of servers that are up are available, capabilities of failed servers are not", () => {
    const check = PluginHealth.aggregate("feature", [
      server("alpha", "Healthy", ["search"]),
      server("beta", "Failed", ["write"], "connection refused"),
      server("gamma", "Healthy", ["read"])
    ], 0)
    const mode = Option.getOrThrow(PluginHealth.degradedMode(check, new PluginHealth.DiscoveryResult({ tools: ["search", "read"], resources: [], partial: true })))
    assert.deepStrictEqual(mode.available, ["search", "read"])
    assert.deepStrictEqual(mode.unavailable, ["write"])
    assert.strictEqual(mode.reason, "2 servers healthy, 1 servers failed")
  })

  it("degraded mode ignores tools a failed server reported and keeps a capability another server still offers", () => {
    const check = PluginHealth.aggregate("feature", [
      server("alpha", "Degraded", ["search", "read"]),
      server("beta", "Failed", ["read", "write"])
    ], 0)
    const discovery = new PluginHealth.DiscoveryResult({
      tools: ["search", "read", "write"],
      resources: [],
      partial: false,
      servers: [
        new PluginHealth.ServerDiscovery({ serverName: "alpha", tools: ["search", "read"], resources: [] }),
        new PluginHealth.ServerDiscovery({ serverName: "beta", tools: ["write"], resources: [] })
      ]
    })
    const mode = Option.getOrThrow(PluginHealth.degradedMode(check, discovery))
    assert.deepStrictEqual(mode.available, ["search", "read"])
    assert.deepStrictEqual(mode.unavailable, ["write"])
    assert.strictEqual(mode.reason, "1 servers healthy, 1 servers failed")
  })

  it("a server's status follows its plugin's state", () => {
    const table: ReadonlyArray<readonly [PluginClient.PluginState, Partial<PluginClient.HealthSnapshot>, PluginHealth.ServerOverlay, PluginHealth.Status, string | undefined]> = [
      [{ _tag: "Running" }, {}, {}, "Healthy", undefined],
      [{ _tag: "Running" }, {}, { probeError: "probe timed out" }, "Degraded", "probe timed out"],
      [{ _tag: "Idle" }, {}, {}, "Healthy", undefined],
      [{ _tag: "Idle" }, { lastError: "old crash" }, {}, "Healthy", undefined],
      [{ _tag: "Idle" }, { lastError: "spawn failed" }, { startFailure: "start failed" }, "Failed", "spawn failed"],
      [{ _tag: "Starting" }, {}, {}, "Healthy", undefined],
      [{ _tag: "Starting" }, { lastError: "exited with code 1" }, {}, "Degraded", "exited with code 1"],
      [{ _tag: "Recovering" }, { lastError: "exited with code 3" }, {}, "Degraded", "exited with code 3"],
      [{ _tag: "Backoff", until: 5 }, { lastError: "exited with code 4" }, {}, "Degraded", "exited with code 4"],
      [{ _tag: "Recovering" }, { lastError: "initialization failed" }, { startFailure: "x" }, "Failed", "initialization failed"],
      [{ _tag: "Stopping" }, {}, {}, "Degraded", "stopping"],
      [{ _tag: "Disabled", reason: "crashed 3 times" }, { lastError: "exited with code 2" }, {}, "Failed", "exited with code 2"],
      [{ _tag: "Stopped" }, {}, {}, "Failed", "stopped"],
      [{ _tag: "Stopped" }, { lastError: "old crash" }, {}, "Failed", "stopped"],
      [{ _tag: "Stopped" }, { lastError: "spawn failed" }, { startFailure: "start failed" }, "Failed", "spawn failed"]
    ]
    for (const [state, overrides, overlay, status, lastError] of table) {
      const result = PluginHealth.serverHealthOf("p", snapshot(state, overrides), overlay)
      const label = `${state._tag} ${JSON.stringify(overrides)} ${JSON.stringify(overlay)}`
      assert.strictEqual(result.status, status, label)
      assert.strictEqual(result.lastError, lastError, label)
    }
  })

  it("capabilities are the discovered tools, else the handshake's supported methods", () => {
    const health = snapshot({ _tag: "Running" }, { supportedMethods: ["echo", "sleep"] })
    assert.deepStrictEqual(PluginHealth.serverHealthOf("p", health).capabilities, ["echo", "sleep"])
    assert.deepStrictEqual(PluginHealth.serverHealthOf("p", health, { capabilities: ["search"] }).capabilities, ["search"])
    assert.deepStrictEqual(PluginHealth.serverHealthOf("p", snapshot({ _tag: "Idle" })).capabilities, [])
  })

  it("the doctor table aligns its columns and ends with one line per group", () => {
    const diagnosis = (id: string, state: string, status: PluginHealth.Status, extra: Partial<ConstructorParameters<typeof PluginHealth.PluginDiagnosis>[0]> = {}) =>
      new PluginHealth.PluginDiagnosis({ ...diagnosisFields(id, { state, status, groups: ["feature"] }), ...extra })
    const report = new PluginHealth.DoctorReport({
      generatedAt: 10_000,
      plugins: [
        diagnosis("a-very-long-plugin-name", "Running", "Healthy", { pid: 4242, uptimeMillis: 65_000, envVars: ["TOKEN"] }),
        diagnosis("b", "Backoff", "Degraded", {
          nextRestartAt: 12_500,
          totalCrashes: 2,
          consecutiveCrashes: 2,
          crashesInWindow: 2,
          lastError: "exited with code 1;\nstderr: boom",
          stderrTail: ["boom"]
        })
      ],
      groups: [PluginHealth.GroupReport.fromHealthcheck(PluginHealth.aggregate("feature", [server("a-very-long-plugin-name", "Healthy"), server("b", "Degraded")], 10_000))]
    })
    const lines = PluginHealth.DoctorReport.render(report).split("\n")
    const [header, rowA, rowB] = lines
    assert.isDefined(header)
    assert.isDefined(rowA)
    assert.isDefined(rowB)
    for (const [title, a, b] of [["HEALTH", "Healthy", "Degraded"], ["CRASHES recent/in a row/total", "0/0/0", "2/2/2"], ["PID", "4242", "-"], ["LAST ERROR", "-", "exited with code 1; stderr: boom"]]) {
      const column = header.indexOf(title ?? "")
      assert.isAbove(column, 0, `${title} missing`)
      assert.strictEqual(rowA.indexOf(a ?? "", column), column, `${title} of a`)
      assert.strictEqual(rowB.indexOf(b ?? "", column), column, `${title} of b`)
    }
    assert.include(rowA, "1 min 5 s")
    assert.include(rowB, "in 2.5 s")
    assert.notInclude(header, "w/c/t")
    assert.include(lines, "group feature: Degraded - 1 of 2 plugins healthy, 1 degraded (a-very-long-plugin-name Healthy, b Degraded)")
    for (const line of lines) assert.notMatch(line, /servers|pluginName/)
    assert.include(lines, "  | boom")
  })
})

// ---------------------------------------------------------------------------------------------
// TestClock, in-memory spawner
// ---------------------------------------------------------------------------------------------

describe("PluginHealth (TestClock, in-memory spawner)", () => {
  it.effect("rejects a configuration with a duplicate plugin or a non-positive probe interval", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({})
      const build = (config: PluginHealth.HealthConfig) =>
        Layer.build(PluginHealth.layer(config).pipe(Layer.provide(PluginManager.layer()), Layer.provide(fake.layer))).pipe(
          Effect.scoped,
          Effect.flip
        )
      const duplicate = yield* build({ groups: { search: ["a", "a"] } })
      assert.strictEqual(duplicate.message, "invalid health config: `groups.search` lists `a` twice")
      const interval = yield* build({ groups: {}, probe: { interval: 0 } })
      assert.strictEqual(interval.field, "probe.interval")
    }))

  it.effect("an unknown group is an UnknownGroup error naming the known ones", () =>
    Effect.gen(function*() {
      const { health } = yield* setup({}, [], { groups: { search: [], write: [] } })
      const error = yield* health.check("serach").pipe(Effect.flip)
      assert.instanceOf(error, PluginHealth.UnknownGroup)
      assert.strictEqual(error.message, "unknown plugin group `serach` (known: search, write)")
      const empty = yield* health.check("search")
      assert.strictEqual(empty.state, "Failed")
      assert.strictEqual(empty.message, "no servers available")
    }))

  it.effect("group status follows live states: running → Healthy, crashed → Degraded while Recovering, disabled → Failed with the last error", () =>
    Effect.gen(function*() {
      const { manager, health } = yield* setup(
        { plugin: InMemorySpawner.echo() },
        [{ id: "alpha", command: "plugin" }, { id: "beta", command: "plugin" }],
        { groups: { search: ["alpha", "beta"] } }
      )
      const idle = yield* health.check("search")
      assert.deepStrictEqual(statuses(idle), { alpha: "Healthy", beta: "Healthy" }, "idle plugins spawn on demand")
      yield* manager.call("alpha", "echo", 1)
      yield* manager.call("beta", "echo", 1)
      yield* TestClock.adjust("5 seconds")
      const running = yield* health.check("search")
      assert.strictEqual(running.state, "Healthy")
      assert.strictEqual(running.message, "all 2 servers healthy")
      assert.strictEqual(running.lastCheck, 5_000)

      yield* manager.call("beta", "crash", { code: 3 }).pipe(Effect.flip)
      const recovering = yield* health.check("search")
      assert.strictEqual(recovering.state, "Degraded")
      assert.strictEqual(recovering.message, "2 servers healthy, 0 servers failed, 1 degraded")
      assert.strictEqual(serverOf(recovering, "beta").status, "Degraded")
      assert.include(serverOf(recovering, "beta").lastError, "exited with code 3")

      for (const code of [4, 5]) {
        yield* TestClock.adjust("1 second")
        yield* manager.call("beta", "crash", { code }).pipe(Effect.flip)
      }
      const disabled = yield* health.check("search")
      assert.strictEqual(disabled.state, "Degraded")
      assert.strictEqual(disabled.message, "1 servers healthy, 1 servers failed")
      const beta = serverOf(disabled, "beta")
      assert.strictEqual(beta.status, "Failed")
      assert.include(beta.lastError, "exited with code 5")

      yield* manager.stop("alpha")
      const down = yield* health.check("search")
      assert.strictEqual(down.state, "Failed")
      assert.strictEqual(down.message, "all 2 servers failed")
      assert.strictEqual(serverOf(down, "alpha").lastError, "stopped")
    }))

  it.effect("an always-on plugin is Degraded while it waits out its backoff and Healthy once restarted", () =>
    Effect.gen(function*() {
      const { manager, health } = yield* setup(
        { plugin: InMemorySpawner.echo({ supportedMethods: ["echo", "search"] }) },
        [{ id: "worker", command: "plugin", options: { policy: LifetimePolicy.alwaysOn } }],
        { groups: { jobs: ["worker"] } }
      )
      yield* manager.start("worker")
      const up = yield* health.check("jobs")
      assert.strictEqual(up.state, "Healthy")
      assert.deepStrictEqual(serverOf(up, "worker").capabilities, ["echo", "search"])
      yield* manager.call("worker", "crash", { code: 9 }).pipe(Effect.flip)
      const backoff = yield* health.check("jobs")
      assert.strictEqual(backoff.state, "Degraded")
      assert.include(serverOf(backoff, "worker").lastError, "exited with code 9")
      // 1 s ±25 %: the restart is due within 1.25 s.
      yield* TestClock.adjust("1250 millis")
      yield* settle
      const restarted = yield* health.check("jobs")
      assert.strictEqual(restarted.state, "Healthy")
      assert.isUndefined(serverOf(restarted, "worker").lastError)
    }))

  it.effect("startup starts a group in parallel and publishes ConfigValidated then StartupHealthy / StartupDegraded / StartupFailed", () =>
    Effect.gen(function*() {
      const initialize = { handshake: Handshake.initialize() }
      const fake = yield* InMemorySpawner.make({
        slow: InMemorySpawner.slowReply("5 seconds"),
        broken: InMemorySpawner.crashOnStart({ code: 1, stderr: "cannot open config.toml\n" })
      })
      const layer = PluginHealth.layer({ groups: { ready: ["one", "two"], partial: ["one", "broken"], down: ["broken", "ghost"] } }).pipe(
        Layer.provideMerge(PluginManager.layer()),
        Layer.provide(fake.layer)
      )
      yield* Effect.gen(function*() {
        const manager = yield* PluginManager.PluginManager
        const health = yield* PluginHealth.PluginHealth
        yield* manager.register({ name: "one", executable: "slow" }, initialize)
        yield* manager.register({ name: "two", executable: "slow" }, initialize)
        yield* manager.register({ name: "broken", executable: "broken" }, initialize)
        const events = yield* health.subscribe

        // Each handshake takes 5 s: in parallel the group is up after 5 s, not 10 s.
        const ready = yield* health.startup("ready").pipe(Effect.forkChild)
        yield* settle
        yield* TestClock.adjust("5 seconds")
        yield* settle
        const readyExit = ready.pollUnsafe()
        assert.isDefined(readyExit, "startup still running after 5 s")
        const readyCheck = yield* Fiber.join(ready)
        assert.strictEqual(readyCheck.state, "Healthy")

        const partial = yield* health.startup("partial")
        assert.strictEqual(partial.state, "Degraded")
        assert.strictEqual(partial.message, "1 servers healthy, 1 servers failed")
        assert.include(serverOf(partial, "broken").lastError, "cannot open config.toml")

        const down = yield* health.startup("down")
        assert.strictEqual(down.state, "Failed")
        assert.strictEqual(down.message, "all 2 servers failed")
        assert.strictEqual(serverOf(down, "ghost").lastError, "plugin id `ghost` is not registered")
        assert.strictEqual(serverOf(down, "broken").status, "Failed", "a failed start stays Failed while the plugin is Recovering")

        const published = yield* events.pipe(Stream.filter(notStateChange), Stream.take(6), Stream.runCollect)
        assert.deepStrictEqual(published.map((e) => `${e._tag}:${"group" in e ? e.group : ""}`), [
          "ConfigValidated:ready",
          "StartupHealthy:ready",
          "ConfigValidated:partial",
          "StartupDegraded:partial",
          "ConfigValidated:down",
          "StartupFailed:down"
        ])
        const first = published[0]
        assert.deepStrictEqual(first?._tag === "ConfigValidated" ? first.plugins : undefined, ["one", "two"])
        const last = published[5]
        assert.strictEqual(last?._tag === "StartupFailed" ? last.check : undefined, down)
      }).pipe(Effect.provide(layer))
    }))

  it.effect("shutdown stops the group and publishes Shutdown", () =>
    Effect.gen(function*() {
      const { fake, manager, health } = yield* setup(
        { plugin: InMemorySpawner.echo() },
        [{ id: "a", command: "plugin" }, { id: "b", command: "plugin" }],
        { groups: { feature: ["a", "b"] } }
      )
      const events = yield* health.subscribe
      yield* health.startup("feature")
      assert.isTrue((yield* fake.spawns).every((s) => s.running))
      yield* health.shutdown("feature")
      assert.isTrue((yield* fake.spawns).every((s) => !s.running))
      assert.isFalse(yield* manager.isRunning("a"))
      const tags = (yield* events.pipe(Stream.filter(notStateChange), Stream.take(3), Stream.runCollect)).map((e) => e._tag)
      assert.deepStrictEqual(tags, ["ConfigValidated", "StartupHealthy", "Shutdown"])
      assert.strictEqual((yield* health.check("feature")).message, "all 2 servers failed")
    }))

  const searchSchema = { type: "object", properties: { query: { type: "string" } }, required: ["query"] }
  const catalog = {
    fast: scripted({
      "tools/list": () => ok({ tools: [{ name: "search", description: "full-text", inputSchema: searchSchema }, { name: "read" }] }),
      "resources/list": () => ok({ resources: [{ uri: "file:///docs", name: "docs", mimeType: "text/markdown" }] })
    }),
    plain: scripted({
      "tools/list": () => ok(["write"]),
      "resources/list": () => ok(["mem://notes"])
    }),
    slow: scripted({
      "tools/list": () => Effect.sleep("60 seconds").pipe(Effect.andThen(ok(["late"]))),
      "resources/list": () => ok([])
    }),
    odd: scripted({
      "tools/list": () => ok({ count: 3 }),
      "resources/list": () => ok({ resources: [{ name: "by-name" }] })
    })
  }
  const discovery = { tools: "tools/list", resources: "resources/list", timeout: "2 seconds" } as const

  it.effect("discover collects tools and resources of both answer shapes; a server timing out makes it partial", () =>
    Effect.gen(function*() {
      const { health } = yield* setup(catalog, [{ id: "fast" }, { id: "plain" }, { id: "slow" }, { id: "odd" }], {
        groups: { complete: ["fast", "plain"], lagging: ["fast", "plain", "slow"], odd: ["odd"] },
        discovery
      })
      const complete = yield* health.discover("complete")
      assert.deepStrictEqual(complete.tools, ["search", "read", "write"])
      assert.deepStrictEqual(complete.resources, ["file:///docs", "mem://notes"])
      assert.isFalse(complete.partial)

      const lagging = yield* health.discover("lagging").pipe(Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1999 millis")
      yield* settle
      assert.isUndefined(lagging.pollUnsafe(), "discovery gave up before its timeout")
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.isDefined(lagging.pollUnsafe(), "discovery still waiting after its timeout")
      const result = yield* Fiber.join(lagging)
      assert.isTrue(result.partial)
      assert.deepStrictEqual(result.tools, ["search", "read", "write"])
      const slow = result.servers?.find((s) => s.serverName === "slow")
      assert.strictEqual(slow?.error, "no answer to `tools/list` within 2 s")
      assert.deepStrictEqual(slow?.tools, [])

      const odd = yield* health.discover("odd")
      assert.isTrue(odd.partial)
      assert.deepStrictEqual(odd.resources, ["by-name"])
      assert.include(odd.servers?.[0]?.error, "`tools/list` expected {tools: [{name}…]} or a list of names")
    }))

  it.effect("a plugin's own discovery methods replace the service-wide ones for it alone", () =>
    Effect.gen(function*() {
      const own = scripted({ "mcp/tools": () => ok(["mine"]), "tools/list": () => ok(["not asked"]) })
      const { health } = yield* setup({ ...catalog, own }, [{ id: "fast" }, { id: "own" }], {
        groups: { mixed: ["fast", "own"] },
        discovery: { ...discovery, plugins: { own: { tools: "mcp/tools" } } }
      })
      const found = yield* health.discover("mixed")
      assert.deepStrictEqual(found.tools, ["search", "read", "mine"])
      // Its own methods name no resources method: it is asked for none.
      assert.deepStrictEqual(found.servers?.find((s) => s.serverName === "own")?.resources, [])
      assert.isFalse(found.partial)
    }))

  it.effect("an empty per-plugin discovery method is a configuration error naming it", () =>
    Effect.gen(function*() {
      const error = yield* setup(catalog, [{ id: "fast" }], {
        groups: { g: ["fast"] },
        discovery: { plugins: { fast: { tools: " " } } }
      }).pipe(Effect.flip)
      assert.include(error.message, "discovery.plugins.fast.tools")
    }))

  it.effect("discovery keeps descriptions, input schemas and mime types, and the doctor shows the group's last discovery", () =>
    Effect.gen(function*() {
      const { health } = yield* setup(catalog, [{ id: "fast" }, { id: "plain" }], { groups: { complete: ["fast", "plain"] }, discovery })
      const before = yield* health.doctor
      assert.isFalse("discovery" in (before.groups[0] ?? {}), "no discovery before one ran")
      const found = yield* health.discover("complete")
      assert.deepStrictEqual(found.toolDetails, [
        { name: "search", description: "full-text", inputSchema: searchSchema },
        { name: "read" },
        { name: "write" }
      ])
      assert.deepStrictEqual(found.resourceDetails, [
        { uri: "file:///docs", name: "docs", mimeType: "text/markdown" },
        { uri: "mem://notes" }
      ])
      const report = yield* health.doctor
      const json: unknown = JSON.parse(JSON.stringify(Schema.encodeSync(PluginHealth.DoctorReport)(report)))
      const decoded = Schema.decodeUnknownSync(PluginHealth.DoctorReport)(json)
      assert.deepStrictEqual(decoded.groups[0]?.discovery?.toolDetails[0], { name: "search", description: "full-text", inputSchema: searchSchema }, "--json has the input schema")
      assert.strictEqual(decoded.groups[0]?.discovery?.resourceDetails[0]?.mimeType, "text/markdown")
      const table = PluginHealth.DoctorReport.render(report)
      assert.include(table, "  tools: search (full-text), read, write")
      assert.include(table, "  resources: file:///docs [text/markdown], mem://notes")
    }))

  it.effect("degraded mode lists the tools of the servers that are up and the methods of a disabled one", () =>
    Effect.gen(function*() {
      const { manager, health } = yield* setup(
        {
          fast: catalog.fast,
          dead: scripted({
            initialize: () => ok({ ok: true, supportedMethods: ["write", "delete"] }),
            crash: (_n, proc) => proc.exit(1)
          })
        },
        [{ id: "fast" }, { id: "dead", options: { handshake: Handshake.initialize() } }],
        { groups: { feature: ["fast", "dead"] }, discovery }
      )
      for (let i = 0; i < 3; i++) yield* manager.call("dead", "crash").pipe(Effect.flip)
      const check = yield* health.check("feature")
      const dead = serverOf(check, "dead")
      assert.strictEqual(dead.status, "Failed")
      assert.deepStrictEqual(dead.capabilities, ["write", "delete"])
      const found = yield* health.discover("feature")
      assert.isTrue(found.partial)
      assert.include(found.servers?.find((s) => s.serverName === "dead")?.error, "is disabled")
      const mode = yield* health.degradedMode("feature")
      assert.deepStrictEqual(mode, Option.some(new PluginHealth.DegradedMode({
        available: ["search", "read"],
        unavailable: ["write", "delete"],
        reason: "1 servers healthy, 1 servers failed"
      })))
      assert.deepStrictEqual(serverOf(yield* health.check("feature"), "fast").capabilities, ["search", "read"], "discovered tools become capabilities")
      const group = (yield* health.doctor).groups[0]
      assert.deepStrictEqual(group?.degradedMode, Option.getOrThrow(mode), "the doctor shows the degraded mode of a degraded group")
      assert.include(PluginHealth.DoctorReport.render(yield* health.doctor), "  degraded mode: still available search, read; unavailable write, delete")
    }))

  it.effect("a group goes Starting → Healthy → ShuttingDown → Stopped, and a stopped group reads Stopped, not Failed", () =>
    Effect.gen(function*() {
      const { health } = yield* setup(
        { slow: InMemorySpawner.slowReply("5 seconds"), stubborn: InMemorySpawner.ignoreSigterm(InMemorySpawner.echo()) },
        [{ id: "a", command: "slow", options: { handshake: Handshake.initialize() } }, { id: "b", command: "stubborn" }],
        { groups: { feature: ["a", "b"] } }
      )
      const events = yield* health.subscribe

      const starting = yield* health.startup("feature").pipe(Effect.forkChild)
      yield* settle
      assert.strictEqual((yield* health.check("feature")).state, "Starting", "while the 5 s handshake runs")
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.strictEqual((yield* Fiber.join(starting)).state, "Healthy")
      assert.isTrue(Option.isNone(yield* health.degradedMode("feature")), "no degraded mode for a healthy group")

      const stopping = yield* health.shutdown("feature").pipe(Effect.forkChild)
      yield* settle
      assert.strictEqual((yield* health.check("feature")).state, "ShuttingDown", "while b ignores SIGTERM")
      yield* TestClock.adjust("1 minute")
      yield* settle
      yield* Fiber.join(stopping)
      const stopped = yield* health.check("feature")
      assert.strictEqual(stopped.state, "Stopped")
      assert.isTrue(Option.isNone(yield* health.degradedMode("feature")), "no degraded mode for a stopped group")

      const changes = (yield* events.pipe(Stream.filter((e) => e._tag === "GroupStateChanged"), Stream.take(4), Stream.runCollect))
        .map((e) => e._tag === "GroupStateChanged" ? `${e.from ?? "-"}→${e.to}` : e._tag)
      assert.deepStrictEqual(changes, ["-→Starting", "Starting→Healthy", "Healthy→ShuttingDown", "ShuttingDown→Stopped"])

      const group = (yield* health.doctor).groups[0]
      assert.deepStrictEqual([group?.status, group?.summary], ["Stopped", "all 2 plugins stopped"])
      assert.isFalse("degradedMode" in (group ?? {}))
    }))

  it.effect("a check publishes GroupStateChanged when it finds the group changed since it looked last, once", () =>
    Effect.gen(function*() {
      const { manager, health } = yield* setup(
        { plugin: InMemorySpawner.echo() },
        [{ id: "a", command: "plugin" }, { id: "b", command: "plugin" }],
        { groups: { g: ["a", "b"] } }
      )
      const events = yield* health.subscribe
      yield* manager.start("a")
      yield* manager.start("b")
      yield* health.check("g")
      yield* health.check("g")
      yield* manager.call("b", "crash", { code: 3 }).pipe(Effect.flip)
      yield* health.check("g")
      const changes = yield* events.pipe(Stream.take(2), Stream.runCollect)
      assert.deepStrictEqual(changes.map((e) => e._tag === "GroupStateChanged" ? [e.from, e.to] : e._tag), [[undefined, "Healthy"], ["Healthy", "Degraded"]])
      const last = changes[1]
      assert.strictEqual(last?._tag === "GroupStateChanged" ? last.message : undefined, "2 servers healthy, 0 servers failed, 1 degraded")
    }))

  it.effect("probes: a slow then failing health answer marks the plugin Degraded once, a later answer recovers it; idle plugins are never spawned", () =>
    Effect.gen(function*() {
      const { fake, manager, health } = yield* setup(
        {
          probed: scripted({
            health: (n) =>
              n === 1
                ? Effect.sleep("5 seconds").pipe(Effect.andThen(ok({ ok: true })))
                : n === 2
                ? Effect.succeed({ error: { code: -32000, message: "warming up" } })
                : ok({ ok: true })
          }),
          lazy: InMemorySpawner.echo()
        },
        [{ id: "probed" }, { id: "lazy" }],
        { groups: { svc: ["probed", "lazy"] }, probe: { interval: "10 seconds", timeout: "1 second" } }
      )
      const seen: Array<PluginHealth.HealthEvent> = []
      yield* (yield* health.subscribe).pipe(Stream.runForEach((e) => Effect.sync(() => seen.push(e))), Effect.forkScoped)
      yield* manager.start("probed")

      yield* TestClock.adjust("10 seconds") // probe 1 sent, answer due at 15 s
      yield* settle
      assert.strictEqual((yield* health.check("svc")).state, "Healthy", "not degraded before the probe timeout")
      yield* TestClock.adjust("1 second") // probe 1 times out
      yield* settle
      const slow = yield* health.check("svc")
      assert.strictEqual(slow.message, "2 servers healthy, 0 servers failed, 1 degraded")
      assert.include(serverOf(slow, "probed").lastError, "timed out after 1 s waiting for `health`")
      assert.strictEqual(serverOf(slow, "lazy").status, "Healthy")

      yield* TestClock.adjust("10 seconds") // probe 2 (at 21 s): an error answer
      yield* settle
      const failing = serverOf(yield* health.check("svc"), "probed")
      assert.strictEqual(failing.status, "Degraded")
      assert.include(failing.lastError, "warming up")

      yield* TestClock.adjust("10 seconds") // probe 3 (at 31 s): fine again
      yield* settle
      assert.strictEqual((yield* health.check("svc")).state, "Healthy")

      const probeEvents = seen.filter(notStateChange)
      assert.deepStrictEqual(probeEvents.map((e) => e._tag), ["HealthDegraded", "HealthRecovered"])
      const degraded = probeEvents[0]
      assert.deepStrictEqual(degraded?._tag === "HealthDegraded" ? degraded.groups : undefined, ["svc"])
      const spawns = yield* fake.spawns
      assert.deepStrictEqual(spawns.map((s) => s.command), ["probed"], "the idle plugin was never spawned by a probe")
      const probes = (spawns[0]?.stdinLines ?? []).filter((l) => l.includes(`"method":"health"`))
      assert.strictEqual(probes.length, 3)
    }))

  it.effect("probes skip a plugin that is not running and do not run at all without a probe config", () =>
    Effect.gen(function*() {
      const { fake, manager, health } = yield* setup(
        { plugin: InMemorySpawner.echo() },
        [{ id: "a", command: "plugin" }],
        { groups: { g: ["a"] } }
      )
      yield* manager.call("a", "echo", 1)
      yield* TestClock.adjust("10 minutes")
      yield* settle
      assert.deepStrictEqual((yield* fake.spawns)[0]?.stdinLines.length, 1, "no periodic probe was sent")
      assert.strictEqual((yield* health.check("g")).state, "Healthy", "reaped (Idle) is healthy")
      yield* health.probeNow
      assert.strictEqual((yield* fake.spawns).length, 1, "probeNow does not respawn a reaped plugin")
    }))

  it.effect("the doctor's checksum column decides on the failure's reason: a refused spawn is a mismatch, a crash whose stderr says \"checksum mismatch\" is not", () =>
    Effect.gen(function*() {
      // Two real files to verify. The in-memory spawner knows commands by path: a file with a
      // declared checksum runs from its verified copy.
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "plugin-health-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
      )
      const tamperedPath = path.join(dir, "tampered")
      const liarPath = path.join(dir, "liar")
      fs.writeFileSync(tamperedPath, "swapped after the checksum was taken")
      fs.writeFileSync(liarPath, "the executable the manifest declares")
      const fake = yield* InMemorySpawner.make({
        [tamperedPath]: InMemorySpawner.echo(),
        [VerifiedExecutable.copyPathOf(liarPath, yield* PluginManifest.checksum(liarPath))]: InMemorySpawner.crashOnStart({
          code: 3,
          stderr: "checksum mismatch in my own config\n"
        })
      })
      const manager = yield* PluginManager.make().pipe(Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, fake.spawner))
      yield* manager.register({ name: "tampered", executable: tamperedPath, checksumSha256: "a".repeat(64) })
      yield* manager.register({ name: "liar", executable: liarPath, checksumSha256: yield* PluginManifest.checksum(liarPath) }, {
        handshake: Handshake.initialize()
      })
      const health = yield* PluginHealth.make({ groups: { g: ["tampered", "liar"] } }).pipe(Effect.provideService(PluginManager.PluginManager, manager))
      yield* manager.start("tampered").pipe(Effect.exit)
      yield* manager.start("liar").pipe(Effect.exit)

      const report = yield* health.doctor
      const [tampered, liar] = report.plugins
      assert.strictEqual(tampered?.lastErrorReason, "ChecksumMismatch")
      assert.strictEqual(tampered?.checksum, "mismatch")
      assert.strictEqual(liar?.lastErrorReason, "InitFailed")
      assert.include(liar?.lastError, "checksum mismatch")
      assert.strictEqual(liar?.checksum, "verified")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("doctor reports every plugin's diagnostics and every group, and the report survives a Schema round trip", () =>
    Effect.gen(function*() {
      const { manager, health } = yield* setup(
        { plugin: InMemorySpawner.echo(), broken: InMemorySpawner.crashOnStart({ code: 2, stderr: "line 1\nline 2\nmissing libfoo.so\n" }) },
        [
          { id: "a", command: "plugin" },
          { id: "b", command: "broken", options: { handshake: Handshake.initialize() } },
          { id: "loner", command: "plugin" }
        ],
        { groups: { g: ["a", "b"] }, stderrTailLines: 2 }
      )
      yield* manager.call("a", "echo", 1)
      yield* manager.start("b").pipe(Effect.exit)
      yield* TestClock.adjust("3 seconds")
      const report = yield* health.doctor
      assert.deepStrictEqual(report.plugins.map((p) => p.id), ["a", "b", "loner"])
      const [a, b, loner] = report.plugins
      assert.strictEqual(a?.state, "Running")
      assert.strictEqual(a?.uptimeMillis, 3_000)
      assert.deepStrictEqual(a?.groups, ["g"])
      assert.strictEqual(b?.state, "Recovering")
      assert.strictEqual(b?.totalCrashes, 1)
      assert.deepStrictEqual(b?.stderrTail, ["line 2", "missing libfoo.so"])
      assert.strictEqual(b?.lastError?.split("missing libfoo.so").length, 2, `the stderr excerpt once in ${b?.lastError}`)
      assert.strictEqual(b?.lastErrorReason, "InitFailed")
      assert.strictEqual(loner?.state, "Idle")
      assert.deepStrictEqual(loner?.groups, [])
      // The doctor speaks of groups and plugins, not claw-code's `pluginName` and `servers`.
      assert.deepStrictEqual(
        { group: report.groups[0]?.group, status: report.groups[0]?.status, summary: report.groups[0]?.summary },
        { group: "g", status: "Degraded", summary: "1 of 2 plugins healthy, 1 degraded" }
      )
      assert.deepStrictEqual(report.groups[0]?.plugins.map((p) => [p.id, p.status]), [["a", "Healthy"], ["b", "Degraded"]])
      const encoded = Schema.encodeSync(PluginHealth.DoctorReport)(report)
      const decoded = Schema.decodeSync(PluginHealth.DoctorReport)(encoded)
      assert.deepStrictEqual(decoded, report)
      assert.strictEqual(PluginHealth.DoctorReport.render(decoded), PluginHealth.DoctorReport.render(report))
    }))
})

// ---------------------------------------------------------------------------------------------
// real processes
// ---------------------------------------------------------------------------------------------

describe("PluginHealth (real processes)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  const fast = LifetimePolicy.makeUnsafe({ shutdownGrace: "1 second" })
  const rpcPlugin = (name: string, flags: ReadonlyArray<string> = [], allowedEnvVars: ReadonlyArray<string> = []) => ({
    name,
    executable: node,
    args: [fixture("rpc-plugin.mjs"), ...flags],
    allowedEnvVars
  })
  const secretName = "PLUGIN_HOST_HEALTH_TEST_TOKEN"
  const secretValue = "s3cr3t-doctor-value-9f2c"

  /** The report encodes to JSON and decodes back to an equal report (and the same table). */
  const assertRoundTrip = (report: PluginHealth.DoctorReport) => {
    const encoded = Schema.encodeSync(PluginHealth.DoctorReport)(report)
    const json = JSON.stringify(encoded)
    assert.notInclude(json, secretValue)
    const parsed: unknown = JSON.parse(json)
    const decoded = Schema.decodeUnknownSync(PluginHealth.DoctorReport)(parsed)
    assert.deepStrictEqual(decoded, report)
    assert.deepStrictEqual(Schema.decodeSync(PluginHealth.DoctorReport)(encoded), report)
    assert.strictEqual(PluginHealth.DoctorReport.render(decoded), PluginHealth.DoctorReport.render(report))
  }
  const rowOf = (table: string, id: string) => {
    const row = table.split("\n").find((line) => line.startsWith(`${id} `))
    assert.isDefined(row, `no row for ${id} in\n${table}`)
    return row
  }
  const withSecret = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.sync(() => {
      process.env[secretName] = secretValue
    }).pipe(
      Effect.andThen(effect),
      Effect.ensuring(Effect.sync(() => {
        delete process.env[secretName]
      }))
    )

  it.live("doctor on a healthy group: every plugin running, env var names without their values, checksum verified", () =>
    withSecret(Effect.gen(function*() {
      const manager = yield* PluginManager.make()
      yield* manager.register(rpcPlugin("alpha", [], [secretName]), { policy: fast })
      yield* manager.register({ name: "worker", executable: node, args: [fixture("echo-worker.ts")] }, {
        policy: fast,
        handshake: Handshake.initialize()
      })
      const checksum = yield* PluginManifest.checksum(fixture("env-dump.sh"))
      yield* manager.register({ name: "shell", executable: fixture("env-dump.sh"), checksumSha256: checksum }, { policy: fast })
      const health = yield* PluginHealth.make({ groups: { core: ["alpha", "worker", "shell"] } }).pipe(Effect.provideService(PluginManager.PluginManager, manager))

      const check = yield* health.startup("core")
      assert.strictEqual(check.state, "Healthy", JSON.stringify(check))
      // The secret really reached the plugin, so its absence from the report proves something.
      assert.deepStrictEqual(yield* manager.call("alpha", "env"), { [secretName]: secretValue })

      const report = yield* health.doctor
      const table = PluginHealth.DoctorReport.render(report)
      const alpha = rowOf(table, "alpha")
      for (const text of ["Running", "Healthy", secretName, "not declared", String(report.plugins[0]?.pid)]) assert.include(alpha, text)
      assert.include(rowOf(table, "worker"), "echo,sleep")
      assert.include(rowOf(table, "shell"), "verified")
      assert.include(table, "group core: Healthy - all 3 plugins healthy (alpha Healthy, worker Healthy, shell Healthy)")
      assert.notInclude(table, secretValue)
      assert.deepStrictEqual(report.plugins.map((p) => p.pid !== undefined && liveChildren().includes(p.pid)), [true, true, true])
      assertRoundTrip(report)

      yield* health.shutdown("core")
      const after = yield* health.doctor
      assert.include(PluginHealth.DoctorReport.render(after), "group core: Stopped - all 3 plugins stopped")
      assert.deepStrictEqual(liveChildren(), [])
      assertRoundTrip(after)
    }).pipe(Effect.provide(live))))

  it.live("doctor on a degraded group: the crashed plugin is Recovering with its exit code and stderr tail", () =>
    withSecret(Effect.gen(function*() {
      const manager = yield* PluginManager.make()
      yield* manager.register(rpcPlugin("steady"), { policy: fast })
      yield* manager.register(rpcPlugin("crasher", [], [secretName]), { policy: fast })
      const health = yield* PluginHealth.make({ groups: { mixed: ["steady", "crasher"] } }).pipe(Effect.provideService(PluginManager.PluginManager, manager))
      assert.strictEqual((yield* health.startup("mixed")).state, "Healthy")
      yield* manager.call("crasher", "crash", { code: 7, stderr: "fatal: disk on fire\n" }).pipe(Effect.flip)

      const report = yield* health.doctor
      const table = PluginHealth.DoctorReport.render(report)
      const crasher = rowOf(table, "crasher")
      for (const text of ["Recovering", "Degraded", "1/1/1", "exited with code 7", secretName]) assert.include(crasher, text)
      assert.include(rowOf(table, "steady"), "Healthy")
      assert.include(table, "group mixed: Degraded - 1 of 2 plugins healthy, 1 degraded (steady Healthy, crasher Degraded)")
      assert.include(table, "stderr of crasher")
      assert.include(table, "  | fatal: disk on fire")
      assert.notInclude(table, secretValue)
      assertRoundTrip(report)
    }).pipe(Effect.provide(live))))

  it.live("doctor on a failed group: a missing executable and a plugin dying in its handshake", () =>
    Effect.gen(function*() {
      const manager = yield* PluginManager.make()
      yield* manager.register({ name: "ghost", executable: "/nonexistent/plugin-host-ghost" }, { policy: fast })
      yield* manager.register(rpcPlugin("broken", ["--exit-after=0"]), { policy: fast, handshake: Handshake.initialize() })
      const health = yield* PluginHealth.make({ groups: { down: ["ghost", "broken"] } }).pipe(Effect.provideService(PluginManager.PluginManager, manager))
      const events = yield* health.subscribe
      const check = yield* health.startup("down")
      assert.strictEqual(check.state, "Failed")
      assert.strictEqual(check.message, "all 2 servers failed")
      const published = yield* events.pipe(Stream.filter(notStateChange), Stream.take(2), Stream.runCollect)
      assert.deepStrictEqual(published.map((e) => e._tag), ["ConfigValidated", "StartupFailed"])

      const report = yield* health.doctor
      const table = PluginHealth.DoctorReport.render(report)
      assert.include(rowOf(table, "ghost"), "Failed")
      assert.include(rowOf(table, "ghost"), "failed to spawn")
      const broken = rowOf(table, "broken")
      assert.include(broken, "Failed")
      assert.include(broken, "initialization failed")
      assert.include(table, "group down: Failed - all 2 plugins failed (ghost Failed, broken Failed)")
      assert.include(table, "stderr of broken (last 1 line):\n  | rpc-plugin: bad --exit-after=0")
      const diagnosed = report.plugins.find((p) => p.id === "broken")
      assert.strictEqual(diagnosed?.lastError?.split("rpc-plugin: bad --exit-after=0").length, 2, `the stderr excerpt once in ${diagnosed?.lastError}`)
      assert.strictEqual(diagnosed?.lastErrorReason, "InitFailed")
      assert.strictEqual(report.plugins.find((p) => p.id === "ghost")?.lastErrorReason, "Spawn")
      assert.deepStrictEqual(liveChildren(), [])
      assertRoundTrip(report)
    }).pipe(Effect.provide(live)))
})
