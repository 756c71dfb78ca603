/**
 * The `plugin-host schema` command: prints the JSON Schema of manifest files, for editors and
 * CI linters. The output is the text of the schema files shipped at the package root
 * (`plugin-manifest.schema.json`, `plugin-manifest.toml.schema.json`); see `ManifestSchema`.
 *
 * @since 0.1.0
 */
import * as Console from "effect/Console"
import { Command, Flag } from "effect/cli"
import * as ManifestSchema from "../ManifestSchema.ts"

/**
 * `plugin-host schema [--toml]`.
 *
 * @category commands
 */
export const command = Command.make("schema", {
  toml: Flag.Boolean("toml").pipe(
    Flag.withDescription("The schema of TOML manifests (snake_case keys) instead of JSON ones (camelCase keys)"),
    Flag.withDefault(false)
  )
}, ({ toml }) => Console.log(ManifestSchema.render(toml ? "toml" : "json").trimEnd())).pipe(
  Command.withDescription("Print the JSON Schema of plugin manifests (JSON by default, --toml for TOML)")
)
