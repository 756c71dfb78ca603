import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as DiscoveryAnswer from "../../src/internal/discoveryAnswer.ts"

/** What a read comes to, in a form a table can hold: the names, or `error: …`. */
const summary = (names: DiscoveryAnswer.Names): ReadonlyArray<string> | string =>
  Result.isSuccess(names) ? names.success : `error: ${names.failure}`

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
      assert.deepStrictEqual(summary(DiscoveryAnswer.toolNames(answer)), expected, title)
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
      assert.deepStrictEqual(summary(DiscoveryAnswer.resourceNames(answer)), expected, title)
    }
  })

  it("a shape description is cut at 120 characters", () => {
    const names = DiscoveryAnswer.toolNames({ blob: "x".repeat(500) })
    assert.isTrue(Result.isFailure(names))
    const shape = Result.isFailure(names) ? names.failure.split("got ")[1] ?? "" : ""
    assert.strictEqual(shape.length, 120)
  })

  it("one server's discovery keeps what each method listed and joins both failures", () => {
    const ok = DiscoveryAnswer.serverDiscovery("a", Result.succeed(["search"]), Result.succeed(["mem://x"]))
    assert.deepStrictEqual([ok.tools, ok.resources, ok.error], [["search"], ["mem://x"], undefined])
    assert.isFalse("error" in ok, "no error key when both answered")
    const half = DiscoveryAnswer.serverDiscovery("a", Result.fail("no answer to `tools/list` within 2 s"), Result.succeed(["mem://x"]))
    assert.deepStrictEqual([half.tools, half.resources, half.error], [[], ["mem://x"], "no answer to `tools/list` within 2 s"])
    const none = DiscoveryAnswer.serverDiscovery("a", Result.fail("tools failed"), Result.fail("resources failed"))
    assert.strictEqual(none.error, "tools failed; resources failed")
  })
})
