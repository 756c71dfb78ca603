/**
 * What the packaging tests need to act as a user outside the repository: commands run with the
 * Node this suite runs on first on `PATH` and none of npm's own `npm_*` variables (which would
 * point an `npm install` in another folder back at this repository), the processes left under a
 * folder (read from `/proc`), and the code blocks of a Markdown file with the marker before each.
 *
 * @since 0.1.0
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

/** The environment for commands run as a user would: Node ≥ 22.19 first on PATH, no npm_* variables. */
export const userEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.toLowerCase().startsWith("npm_")) env[key] = value
  }
  env.PATH = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}`
  env.npm_config_fund = "false"
  env.npm_config_audit = "false"
  env.npm_config_update_notifier = "false"
  return env
}

/** What a finished command left. */
export interface Outcome {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to its end (killed after `timeoutMs`), collecting its output. */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly timeoutMs?: number; readonly env?: Record<string, string> }
): Promise<Outcome> =>
  new Promise((resolve) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? userEnv(), stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

/** Runs a shell command line (the README's `sh` lines) in `cwd`. */
export const sh = (line: string, cwd: string, timeoutMs?: number): Promise<Outcome> =>
  run("sh", ["-c", line], timeoutMs === undefined ? { cwd } : { cwd, timeoutMs })

/** Live processes whose working directory or command line is inside `dir`. */
export const processesUnder = (dir: string): Array<string> =>
  fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name) && Number(name) !== process.pid).flatMap((pid) => {
    try {
      const state = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0]
      if (state === "Z" || state === "X") return []
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
      const cwd = fs.readlinkSync(`/proc/${pid}/cwd`)
      return cmdline.includes(dir) || cwd.startsWith(dir) ? [`${pid} ${cmdline}`] : []
    } catch {
      return []
    }
  })

/** A fenced code block of a Markdown file and the `<!-- test:… -->` marker right before it, if any. */
export interface CodeBlock {
  readonly language: string
  readonly code: string
  readonly marker: string | undefined
  /** 1-based line of the opening fence. */
  readonly line: number
}

/** The fenced code blocks of a Markdown text, in order. */
export const codeBlocks = (markdown: string): Array<CodeBlock> => {
  const blocks: Array<CodeBlock> = []
  const lines = markdown.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i] ?? "")
    if (open === null) continue
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l))
    if (end === -1) break
    const previous = lines.slice(0, i).reverse().find((l) => l.trim() !== "")
    const marker = previous === undefined ? undefined : /^<!--\s*test:(\S+)\s*-->$/.exec(previous.trim())?.[1]
    blocks.push({ language: open[1] ?? "", code: lines.slice(i + 1, end).join("\n"), marker, line: i + 1 })
    i = end
  }
  return blocks
}
