import { assert, describe, it } from "@effect/vitest"
import * as GroupHealth from "../src/GroupHealth.ts"

// `serverHealthOf`, `aggregate` and `degradedMode` are specified in test/PluginHealth.test.ts
// ("PluginHealth (aggregation rules)"), through the names PluginHealth re-exports.

describe("GroupHealth", () => {
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
