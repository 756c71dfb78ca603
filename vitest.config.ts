import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    // Real-process tests spawn children and wait on real (short) grace periods.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: { name: "host", include: ["test/**/*.test.ts"], exclude: ["test/packaging.test.ts"], sequence: { groupOrder: 0 } }
      },
      {
        // Packs the tarball and installs it with npm: runs once the others are done, so its
        // installs never compete with their real-process timing for the machine's cores.
        extends: true,
        test: { name: "packaging", include: ["test/packaging.test.ts"], sequence: { groupOrder: 1 } }
      }
    ]
  }
})
