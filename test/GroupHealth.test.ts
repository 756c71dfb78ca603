import { assert, describe, it } from "@effect/vitest"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as GroupHealth from "../src/GroupHealth.ts"

// `serverHealthOf`, `aggregate`'s verdicts and `degradedMode`'s contents are specified in
// test/PluginHealth.test.ts ("PluginHealth (aggregation rules)"), through the names PluginHealth
// re-exports; the lifecycle rules are here.

const server = (serverName: string, status: GroupHealth.Status, capabilities: ReadonlyArray<string> = []) =>
  new GroupHealth.ServerHealth({ serverName, status, capabilities: [...capabilities] })

describe("GroupHealth", () => {
  it("a group's lifecycle state from its verdict, its plugins' states and what the service is doing to it", () => {
    const table: ReadonlyArray<readonly [string, GroupHealth.Status, ReadonlyArray<GroupHealth.MemberState>, GroupHealth.Phase | undefined, GroupHealth.Lifecycle]> = [
      ["a startup under way is Starting, whatever the plugins say", "Failed", ["Running", "Recovering"], "Starting", "Starting"],
      ["a shutdown under way is ShuttingDown, even once all are stopped", "Failed", ["Stopped", "Stopped"], "ShuttingDown", "ShuttingDown"],
      ["every plugin stopped on purpose is Stopped, not Failed", "Failed", ["Stopped", "Stopped"], undefined, "Stopped"],
      ["one plugin stopped is Stopped", "Failed", ["Stopped"], undefined, "Stopped"],
      ["stopping and stopped is ShuttingDown", "Degraded", ["Stopping", "Stopped"], undefined, "ShuttingDown"],
      ["all stopping is ShuttingDown", "Degraded", ["Stopping", "Stopping"], undefined, "ShuttingDown"],
      ["one stopping while another runs is the verdict", "Degraded", ["Stopping", "Running"], undefined, "Degraded"],
      ["healthy with a first start under way is Starting", "Healthy", ["Running", "Starting"], undefined, "Starting"],
      ["a restart after a crash is Degraded, not Starting", "Degraded", ["Running", "Starting"], undefined, "Degraded"],
      ["all running is the verdict: Healthy", "Healthy", ["Running", "Running"], undefined, "Healthy"],
      ["idle (spawned on demand) is Healthy", "Healthy", ["Idle", "Idle"], undefined, "Healthy"],
      ["recovering is the verdict: Degraded", "Degraded", ["Running", "Recovering"], undefined, "Degraded"],
      ["a stopped plugin beside a disabled one is Failed: the disabled one did not stop on purpose", "Failed", ["Stopped", "Disabled"], undefined, "Failed"],
      ["a stopped plugin beside an unregistered id is Failed", "Failed", ["Stopped", undefined], undefined, "Failed"],
      ["every plugin disabled is Failed", "Failed", ["Disabled", "Disabled"], undefined, "Failed"],
      ["backoff is the verdict", "Degraded", ["Backoff"], undefined, "Degraded"],
      ["no plugins is the verdict (Failed)", "Failed", [], undefined, "Failed"]
    ]
    for (const [title, status, states, phase, expected] of table) {
      assert.strictEqual(GroupHealth.lifecycleOf(status, states, phase), expected, title)
    }
  })

  it("aggregate places the check in its lifecycle when given the plugins' states, and keeps the verdict's message", () => {
    const servers = [server("a", "Failed"), server("b", "Failed")]
    const stopped = GroupHealth.aggregate("g", servers, 7, { states: ["Stopped", "Stopped"] })
    assert.deepStrictEqual([stopped.state, stopped.message], ["Stopped", "all 2 servers failed"])
    assert.strictEqual(GroupHealth.aggregate("g", servers, 7).state, "Failed", "without states, the verdict")
    assert.strictEqual(GroupHealth.aggregate("g", servers, 7, { states: ["Running", "Running"], phase: "ShuttingDown" }).state, "ShuttingDown")
  })

  it("degraded mode exists only for a Degraded group", () => {
    const discovery = GroupHealth.discoveryOf([
      new GroupHealth.ServerDiscovery({ serverName: "a", tools: ["search"], resources: [] }),
      new GroupHealth.ServerDiscovery({ serverName: "b", tools: ["write"], resources: [] })
    ])
    const table: ReadonlyArray<readonly [string, GroupHealth.PluginHealthcheck, boolean]> = [
      ["healthy", GroupHealth.aggregate("g", [server("a", "Healthy"), server("b", "Healthy")], 0), false],
      ["degraded", GroupHealth.aggregate("g", [server("a", "Healthy"), server("b", "Failed", ["write"])], 0), true],
      ["failed", GroupHealth.aggregate("g", [server("a", "Failed"), server("b", "Failed")], 0), false],
      ["stopped", GroupHealth.aggregate("g", [server("a", "Failed"), server("b", "Failed")], 0, { states: ["Stopped", "Stopped"] }), false],
      ["starting", GroupHealth.aggregate("g", [server("a", "Healthy"), server("b", "Failed")], 0, { states: ["Starting", "Recovering"], phase: "Starting" }), false]
    ]
    for (const [title, check, degraded] of table) {
      assert.strictEqual(Option.isSome(GroupHealth.degradedMode(check, discovery)), degraded, title)
    }
    const mode = GroupHealth.degradedMode(table[1]![1], discovery)
    assert.deepStrictEqual(Option.map(mode, (m) => [m.available, m.unavailable]), Option.some([["search"], ["write"]]))
  })

  it("a group's discovery keeps each tool's description and input schema and each resource's mime type, the first server's entry winning", () => {
    const inputSchema = { type: "object", properties: { q: { type: "string" } } }
    const a = new GroupHealth.ServerDiscovery({
      serverName: "a",
      tools: ["search"],
      resources: ["file:///docs"],
      toolDetails: [{ name: "search", description: "full-text", inputSchema }],
      resourceDetails: [{ uri: "file:///docs", mimeType: "text/markdown" }]
    })
    const b = new GroupHealth.ServerDiscovery({
      serverName: "b",
      tools: ["search", "write"],
      resources: ["file:///docs"],
      toolDetails: [{ name: "search", description: "another" }, { name: "write" }],
      resourceDetails: [{ uri: "file:///docs", mimeType: "text/plain" }]
    })
    const found = GroupHealth.discoveryOf([a, b])
    assert.deepStrictEqual(found.toolDetails, [{ name: "search", description: "full-text", inputSchema }, { name: "write" }])
    assert.deepStrictEqual(found.resourceDetails, [{ uri: "file:///docs", mimeType: "text/markdown" }])
    const decoded = Schema.decodeUnknownSync(GroupHealth.DiscoveryResult)({ tools: ["x"], resources: [], partial: false })
    assert.deepStrictEqual([decoded.toolDetails, decoded.resourceDetails], [[], []], "a result without details still decodes")
  })

  it("a group's discovery: tools and resources deduplicated in server order, partial when a server could not answer", () => {
    const a = new GroupHealth.ServerDiscovery({ serverName: "a", tools: ["search", "read"], resources: ["mem://x"] })
    const b = new GroupHealth.ServerDiscovery({ serverName: "b", tools: ["read", "write"], resources: ["mem://x", "file:///y"] })
    const down = new GroupHealth.ServerDiscovery({ serverName: "c", tools: [], resources: [], error: "is disabled" })
    const complete = GroupHealth.discoveryOf([a, b])
    assert.deepStrictEqual(complete.tools, ["search", "read", "write"])
    assert.deepStrictEqual(complete.resources, ["mem://x", "file:///y"])
    assert.isFalse(complete.partial)
    assert.deepStrictEqual(complete.servers, [a, b])
    assert.isTrue(GroupHealth.discoveryOf([a, down]).partial)
    const empty = GroupHealth.discoveryOf([])
    assert.deepStrictEqual([empty.tools, empty.resources, empty.partial], [[], [], false])
  })

  it("a server that cannot be asked is Failed with the reason, keeping the tools it discovered before", () => {
    const server = GroupHealth.unreachableServer("ghost", "plugin id `ghost` is not registered", { capabilities: ["search"] })
    assert.deepStrictEqual([server.status, server.lastError, server.capabilities], ["Failed", "plugin id `ghost` is not registered", ["search"]])
    assert.deepStrictEqual(GroupHealth.unreachableServer("ghost", "gone").capabilities, [])
  })
})

describe("GroupHealth remote plugins", () => {
  const instance = (id: string) => new GroupHealth.RemoteInstance({ id, version: "1.0.0", latencyMillis: 0.4, requests: 0, errors: 0 })

  it("a remote plugin is healthy at its minimum of instances, degraded below it, failed at zero or when discovery failed", () => {
    const table: ReadonlyArray<readonly [number, number, string | undefined, GroupHealth.Status, string]> = [
      [3, 2, undefined, "Healthy", "3 instances (2 required)"],
      [2, 2, undefined, "Healthy", "2 instances (2 required)"],
      [1, 1, undefined, "Healthy", "1 instance (1 required)"],
      [1, 2, undefined, "Degraded", "1 of 2 required instances"],
      [0, 1, undefined, "Failed", "no instance answers"],
      [0, 2, "cannot connect", "Failed", "discovery failed: cannot connect"]
    ]
    for (const [count, min, problem, status, message] of table) {
      assert.deepStrictEqual(GroupHealth.remoteStatusOf(count, min, problem), [status, message], `${count} of ${min}`)
    }
  })

  it("a remote check carries the plugin, its service, its minimum, the instances and the verdict", () => {
    const check = GroupHealth.remoteCheck({ plugin: "cal", service: "calendar", minInstances: 2 }, [instance("a")], 1234)
    assert.deepInclude(check, { plugin: "cal", service: "calendar", minInstances: 2, state: "Degraded", lastCheck: 1234, message: "1 of 2 required instances" })
    assert.deepStrictEqual(Schema.decodeUnknownSync(GroupHealth.RemoteHealthcheck)(Schema.encodeSync(GroupHealth.RemoteHealthcheck)(check)), check)
  })

  it("instance changes are the ids that joined and left between two checks", () => {
    assert.deepStrictEqual(GroupHealth.instanceChanges([instance("a"), instance("b")], [instance("b"), instance("c")]), { joined: ["c"], left: ["a"] })
    assert.deepStrictEqual(GroupHealth.instanceChanges([instance("a")], [instance("a")]), { joined: [], left: [] })
  })
})
