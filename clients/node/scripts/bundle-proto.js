#!/usr/bin/env node
// prepack: copy the API's .proto from the repository into the package (proto/), so the
// packed package needs no checkout. postpack (--clean): remove the copy again, so that
// a checkout always reads the repository's own.
"use strict";

const fs = require("fs");
const path = require("path");

const PACKAGE = path.join(__dirname, "..");
const FILE = path.join("sheep", "runtime", "v1", "runtime.proto");
const bundled = path.join(PACKAGE, "proto");

if (process.argv.includes("--clean")) {
  fs.rmSync(bundled, { recursive: true, force: true });
} else {
  const to = path.join(bundled, FILE);
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(path.join(PACKAGE, "..", "..", "proto", FILE), to);
  process.stdout.write(`bundled proto/${FILE}\n`);
}
