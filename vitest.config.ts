import { defineConfig } from "vitest/config";

// Pure-core and unit tests run once; everything that touches a database runs once per engine.
// SQLite always; PostgreSQL when MYELIN_TEST_POSTGRES names a server (each test file makes its own databases).
const DB_TESTS = ["test/client/**/*.test.ts", "test/admin/**/*.test.ts", "test/storage/**/*.test.ts", "test/cli/**/*.test.ts", "test/reliability/**/*.test.ts", "test/federation/**/*.test.ts"];
const postgres = process.env.MYELIN_TEST_POSTGRES;

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: "core", include: ["test/core/**/*.test.ts", "test/unit/**/*.test.ts"] } },
      { extends: true, test: { name: "sqlite", include: DB_TESTS, env: { MYELIN_TEST_DB: "sqlite" } } },
      ...(postgres ? [{ extends: true as const, test: { name: "postgres", include: DB_TESTS, env: { MYELIN_TEST_DB: "postgres" } } }] : []),
    ],
  },
});
