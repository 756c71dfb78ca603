import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real-process tests spawn children and wait on real (short) grace periods.
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
