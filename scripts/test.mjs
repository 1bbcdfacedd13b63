// Runs the TypeScript tests with the Node.js test runner.
// Usage: node scripts/test.mjs [DIR_OR_FILE ...]   (default: test)
// Node.js 20 does not expand globs after --test, so this script collects the *.test.ts files itself
// (sorted, skipping node_modules and dist) and passes them by name.

import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const SKIPPED_DIRS = new Set(["node_modules", "dist"]);

function collectTestFiles(path, files) {
  if (!statSync(path).isDirectory()) {
    files.push(path);
    return;
  }
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory() && !SKIPPED_DIRS.has(entry.name)) {
      collectTestFiles(child, files);
    } else if (entry.isFile() && entry.name.endsWith(".test.ts")) {
      files.push(child);
    }
  }
}

const roots = process.argv.length > 2 ? process.argv.slice(2) : ["test"];
const files = [];
for (const root of roots) {
  try {
    collectTestFiles(root, files);
  } catch (error) {
    console.error(`scripts/test.mjs: cannot read test path ${root}: ${error.message}`);
    process.exit(2);
  }
}
files.sort();

// Zero files usually means a mistyped path, so it fails instead of reporting an empty pass.
if (files.length === 0) {
  console.error(`scripts/test.mjs: no *.test.ts files found under ${roots.join(", ")}`);
  process.exit(1);
}

const args = ["--import", "tsx", "--test", "--test-concurrency=2", "--test-reporter=spec", ...files];
const child = spawn(process.execPath, args, { stdio: "inherit" });
child.on("exit", (code, signal) => {
  if (signal) {
    console.error(`scripts/test.mjs: test runner ended by ${signal}`);
    process.exit(1);
  }
  process.exit(code ?? 1);
});
