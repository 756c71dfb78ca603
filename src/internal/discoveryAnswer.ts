/**
 * Reading what a plugin answers to a discovery method, and what one server's discovery comes to.
 *
 * A tools method may answer a bare list of names or the MCP `{tools: [{name, description?,
 * inputSchema?}…]}` shape; a resources method a bare list of URIs or `{resources: [{uri|name,
 * description?, mimeType?}…]}`. What a plugin says about an entry beyond its name is kept. Anything else is not a
 * list, and the reason says what came instead (the first 120 characters of it), so a doctor
 * reader can fix the plugin. The `PluginHealth` service makes the calls; this module only reads.
 *
 * @internal
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { type ResourceInfo, ServerDiscovery, type ToolInfo } from "../GroupHealth.ts"

/** The answers a discovery method may give: a bare list, or the MCP `{tools}`/`{resources}` shape. */
const ToolEntry = Schema.Union([
  Schema.String,
  Schema.Struct({ name: Schema.String, description: Schema.optionalKey(Schema.String), inputSchema: Schema.optionalKey(Schema.Unknown) })
])
const ToolList = Schema.Union([Schema.Array(ToolEntry), Schema.Struct({ tools: Schema.Array(ToolEntry) })])
const resourceDetail = { name: Schema.optionalKey(Schema.String), description: Schema.optionalKey(Schema.String), mimeType: Schema.optionalKey(Schema.String) }
const ResourceEntry = Schema.Union([
  Schema.String,
  Schema.Struct({ uri: Schema.String, ...resourceDetail }),
  Schema.Struct({ ...resourceDetail, name: Schema.String })
])
const ResourceList = Schema.Union([Schema.Array(ResourceEntry), Schema.Struct({ resources: Schema.Array(ResourceEntry) })])
const decodeToolList = Schema.decodeUnknownResult(ToolList)
const decodeResourceList = Schema.decodeUnknownResult(ResourceList)

const describeShape = (u: unknown): string => (JSON.stringify(u) ?? String(u)).slice(0, 120)

/** Entries read from a discovery answer, or why the answer is not a list of them. */
export type Entries<A> = Result.Result<ReadonlyArray<A>, string>

/** Tools read from a discovery answer. */
export type Tools = Entries<ToolInfo>

/** Resources read from a discovery answer. */
export type Resources = Entries<ResourceInfo>

/** A tool entry as a `ToolInfo`: its name, and its description and input schema when given. */
const toolInfo = (entry: typeof ToolEntry.Type): ToolInfo =>
  typeof entry === "string" ? { name: entry } : {
    name: entry.name,
    ...(entry.description === undefined ? {} : { description: entry.description }),
    ...(entry.inputSchema === undefined ? {} : { inputSchema: entry.inputSchema })
  }

/** A resource entry as a `ResourceInfo`, identified by its uri, else its name. */
const resourceInfo = (entry: typeof ResourceEntry.Type): ResourceInfo => {
  if (typeof entry === "string") return { uri: entry }
  const uri = "uri" in entry && typeof entry.uri === "string" ? entry.uri : entry.name ?? ""
  return {
    uri,
    ...(entry.name === undefined ? {} : { name: entry.name }),
    ...(entry.description === undefined ? {} : { description: entry.description }),
    ...(entry.mimeType === undefined ? {} : { mimeType: entry.mimeType })
  }
}

/** Tools from a discovery answer, or why the answer is not a tool list. */
export const tools = (result: unknown): Tools => {
  const decoded = decodeToolList(result)
  if (Result.isFailure(decoded)) return Result.fail(`expected {tools: [{name}…]} or a list of names, got ${describeShape(result)}`)
  const list = decoded.success
  return Result.succeed(("tools" in list ? list.tools : list).map(toolInfo))
}

/** Resources from a discovery answer (identified by uri, else name), or why it is not a list. */
export const resources = (result: unknown): Resources => {
  const decoded = decodeResourceList(result)
  if (Result.isFailure(decoded)) {
    return Result.fail(`expected {resources: [{uri|name}…]} or a list of uris, got ${describeShape(result)}`)
  }
  const list = decoded.success
  return Result.succeed(("resources" in list ? list.resources : list).map(resourceInfo))
}

/** Tools known only by name (a server's capabilities when there is no tools method). */
export const namedTools = (names: ReadonlyArray<string>): Tools => Result.succeed(names.map((name) => ({ name })))

const failureOf = <A>(entries: Entries<A>): string | undefined => Result.isFailure(entries) ? entries.failure : undefined

/** One server's discovery from its two answers: what each listed, and every failure joined by `; `. */
export const serverDiscovery = (serverName: string, tools: Tools, resources: Resources): ServerDiscovery => {
  const errors = [failureOf(tools), failureOf(resources)].filter((e) => e !== undefined)
  const toolDetails = Result.isSuccess(tools) ? [...tools.success] : []
  const resourceDetails = Result.isSuccess(resources) ? [...resources.success] : []
  return new ServerDiscovery({
    serverName,
    tools: toolDetails.map((t) => t.name),
    resources: resourceDetails.map((r) => r.uri),
    toolDetails,
    resourceDetails,
    ...(errors.length === 0 ? {} : { error: errors.join("; ") })
  })
}
