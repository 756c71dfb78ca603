/**
 * The Promise-based variants (raw, vscode-jsonrpc, MCP SDK) behind one small interface, so a
 * scenario runs the same loop over each. Our own variants are driven in Effect (see
 * `effect.ts`), the way an Effect user calls them.
 */
export interface Driver {
  /** The worker's pid (for the leftover check). */
  readonly pid: number | undefined
  /** One request; resolves with the result (MCP: the tool's first text content). */
  readonly call: (method: string, params?: unknown) => Promise<unknown>
  /** Stops the worker and waits for it to exit. Never throws. */
  readonly close: () => Promise<void>
}

export type DriverVariant = "raw" | "vscode" | "mcp"

/** Spawns a worker and completes its handshake (raw: `initialize`, MCP: `initialize` + `initialized`). */
export const openDriver = async (variant: DriverVariant, options?: { readonly worker?: string | undefined }): Promise<Driver> => {
  switch (variant) {
    case "raw":
      return (await import("./raw.ts")).open(options?.worker)
    case "vscode":
      return (await import("./vscode.ts")).open()
    case "mcp":
      return (await import("./mcp.ts")).open()
  }
}

/** Opens a driver, runs `use`, and always closes it. */
export const withDriver = async <A>(
  variant: DriverVariant,
  use: (driver: Driver) => Promise<A>,
  options?: { readonly worker?: string | undefined }
): Promise<A> => {
  const driver = await openDriver(variant, options)
  try {
    return await use(driver)
  } finally {
    await driver.close()
  }
}
