import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as DiscoveryAnswer from "../../src/internal/discoveryAnswer.ts"

/** What a read comes to, in a form a table can hold: the names, or `error: …`. */
const summary = <A>(entries: DiscoveryAnswer.Entries<A>, name: (a: A) => string): ReadonlyArray<string> | string =>
  Result.isSuccess(entries) ? entries.success.map(name) : `error: ${entries.failure}`
const toolNames = (answer: unknown) => summary(DiscoveryAnswer.tools(answer), (t) => t.name)
const resourceUris = (answer: unknown) => summary(DiscoveryAnswer.resources(answer), (r) => r.uri)

describe("DiscoveryAnswer (reading discovery answers)", () => {
  it("tool lists: a bare list of names or the MCP {tools: [{name}]} shape; anything else says what came", () => {
    const table: ReadonlyArray<readonly [string, unknown, ReadonlyArray<string> | string]> = [
      ["bare names", ["search", "read"], ["search", "read"]],
      ["MCP shape, extra keys ignored", { tools: [{ name: "search", description: "full-text" }, { name: "read" }] }, ["search", "read"]],
      ["a list mixing names and entries", ["search", { name: "read" }], ["search", "read"]],
      ["an empty list", [], []],
      ["an empty MCP list", { tools: [] }, []],
      ["an object that is not a tool list", { count: 3 }, "error: expected {tools: [{name}…]} or a list of names, got {\"count\":3}"],
      ["an entry without a name", [{ title: "x" }], "error: expected {tools: [{name}…]} or a list of names, got [{\"title\":\"x\"}]"],
      ["null", null, "error: expected {tools: [{name}…]} or a list of names, got null"],
      ["undefined is described, not thrown on", undefined, "error: expected {tools: [{name}…]} or a list of names, got undefined"]
    ]
    for (const [title, answer, expected] of table) {
      assert.deepStrictEqual(toolNames(answer), expected, title)
    }
  })

  it("resource lists: bare URIs or {resources: [{uri|name}]}, the uri winning over the name", () => {
    const table: ReadonlyArray<readonly [string, unknown, ReadonlyArray<string> | string]> = [
      ["bare uris", ["mem://notes"], ["mem://notes"]],
      ["uri wins over name", { resources: [{ uri: "file:///docs", name: "docs" }] }, ["file:///docs"]],
      ["a name without a uri", { resources: [{ name: "by-name" }] }, ["by-name"]],
      ["not a list", "mem://notes", "error: expected {resources: [{uri|name}…]} or a list of uris, got \"mem://notes\""]
    ]
    for (const [title, answer, expected] of table) {
      assert.deepStrictEqual(resourceUris(answer), expected, title)
    }
  })

  it("an entry keeps what the plugin said about it: a tool's description and input schema, a resource's name, description and mime type", () => {
    const inputSchema = { type: "object", properties: { query: { type: "string" } }, required: ["query"] }
    const tools = DiscoveryAnswer.tools({ tools: [{ name: "search", description: "full-text", inputSchema, title: "ignored" }, { name: "read" }, "write"] })
    assert.deepStrictEqual(Result.getOrThrow(tools), [{ name: "search", description: "full-text", inputSchema }, { name: "read" }, { name: "write" }])
    const resources = DiscoveryAnswer.resources({
      resources: [{ uri: "file:///docs", name: "docs", description: "manuals", mimeType: "text/markdown" }, { name: "by-name" }, "mem://x"]
    })
    assert.deepStrictEqual(Result.getOrThrow(resources), [
      { uri: "file:///docs", name: "docs", description: "manuals", mimeType: "text/markdown" },
      { uri: "by-name", name: "by-name" },
      { uri: "mem://x" }
    ])
  })

  it("a shape description is cut at 120 characters", () => {
    const names = DiscoveryAnswer.tools({ blob: "x".repeat(500) })
    assert.isTrue(Result.isFailure(names))
    const shape = Result.isFailure(names) ? names.failure.split("got ")[1] ?? "" : ""
    assert.strictEqual(shape.length, 120)
  })

  it("one server's discovery keeps what each method listed and joins both failures", () => {
    const ok = DiscoveryAnswer.serverDiscovery("a", Result.succeed([{ name: "search", description: "full-text" }]), Result.succeed([{ uri: "mem://x", mimeType: "text/plain" }]))
    assert.deepStrictEqual([ok.tools, ok.resources, ok.error], [["search"], ["mem://x"], undefined])
    assert.deepStrictEqual([ok.toolDetails, ok.resourceDetails], [[{ name: "search", description: "full-text" }], [{ uri: "mem://x", mimeType: "text/plain" }]])
    assert.isFalse("error" in ok, "no error key when both answered")
    const half = DiscoveryAnswer.serverDiscovery("a", Result.fail("no answer to `tools/list` within 2 s"), Result.succeed([{ uri: "mem://x" }]))
    assert.deepStrictEqual([half.tools, half.resources, half.error], [[], ["mem://x"], "no answer to `tools/list` within 2 s"])
    const none = DiscoveryAnswer.serverDiscovery("a", Result.fail("tools failed"), Result.fail("resources failed"))
    assert.strictEqual(none.error, "tools failed; resources failed")
  })
})
