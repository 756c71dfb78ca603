/**
 * Reading what a plugin answers to a discovery method, and what one server's discovery comes to.
 *
 * A tools method may answer a bare list of names or the MCP `{tools: [{name}…]}` shape; a
 * resources method a bare list of URIs or `{resources: [{uri|name}…]}`. Anything else is not a
 * list, and the reason says what came instead (the first 120 characters of it), so a doctor
 * reader can fix the plugin. The `PluginHealth` service makes the calls; this module only reads.
 *
 * @internal
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { ServerDiscovery } from "../GroupHealth.ts"

/** The answers a discovery method may give: a bare list, or the MCP `{tools}`/`{resources}` shape. */
const ToolEntry = Schema.Union([Schema.String, Schema.Struct({ name: Schema.String })])
const ToolList = Schema.Union([Schema.Array(ToolEntry), Schema.Struct({ tools: Schema.Array(ToolEntry) })])
const ResourceEntry = Schema.Union([Schema.String, Schema.Struct({ uri: Schema.String }), Schema.Struct({ name: Schema.String })])
const ResourceList = Schema.Union([Schema.Array(ResourceEntry), Schema.Struct({ resources: Schema.Array(ResourceEntry) })])
const decodeToolList = Schema.decodeUnknownResult(ToolList)
const decodeResourceList = Schema.decodeUnknownResult(ResourceList)

const describeShape = (u: unknown): string => (JSON.stringify(u) ?? String(u)).slice(0, 120)

/** A list of names read from a discovery answer, or why the answer is not one. */
export type Names = Result.Result<ReadonlyArray<string>, string>

/** Tool names from a discovery answer, or why the answer is not a tool list. */
export const toolNames = (result: unknown): Names => {
  const decoded = decodeToolList(result)
  if (Result.isFailure(decoded)) return Result.fail(`expected {tools: [{name}…]} or a list of names, got ${describeShape(result)}`)
  const list = decoded.success
  const entries = "tools" in list ? list.tools : list
  return Result.succeed(entries.map((entry) => typeof entry === "string" ? entry : entry.name))
}

/** Resource identifiers (uri, else name) from a discovery answer, or why it is not a list. */
export const resourceNames = (result: unknown): Names => {
  const decoded = decodeResourceList(result)
  if (Result.isFailure(decoded)) {
    return Result.fail(`expected {resources: [{uri|name}…]} or a list of uris, got ${describeShape(result)}`)
  }
  const list = decoded.success
  const entries = "resources" in list ? list.resources : list
  return Result.succeed(entries.map((entry) => typeof entry === "string" ? entry : "uri" in entry ? entry.uri : entry.name))
}

/** One server's discovery from its two answers: what each listed, and every failure joined by `; `. */
export const serverDiscovery = (serverName: string, tools: Names, resources: Names): ServerDiscovery => {
  const errors = [tools, resources].flatMap((r) => Result.isFailure(r) ? [r.failure] : [])
  return new ServerDiscovery({
    serverName,
    tools: Result.isSuccess(tools) ? [...tools.success] : [],
    resources: Result.isSuccess(resources) ? [...resources.success] : [],
    ...(errors.length === 0 ? {} : { error: errors.join("; ") })
  })
}
