// Bundle the front end into ../notebookcarto/static (every dependency inlined, no network at
// run time). `node build.mjs --check` builds in memory and fails if the committed files differ.
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "notebookcarto", "static");
const check = process.argv.includes("--check");

const common = {
  bundle: true,
  minify: true,
  legalComments: "eof",
  target: ["es2020"],
  loader: { ".css": "text", ".fs": "text", ".vs": "text" },
  logLevel: "warning",
  charset: "utf8",
  write: !check,
};

const targets = [
  { entryPoints: [join(here, "src", "widget.js")], format: "esm", outfile: join(out, "widget.js") },
  { entryPoints: [join(here, "src", "host.js")], format: "iife", outfile: join(out, "host.js") },
];

let stale = [];
for (const target of targets) {
  const result = await build({ ...common, ...target });
  if (check) {
    for (const file of result.outputFiles) {
      let committed = null;
      try { committed = readFileSync(file.path); } catch { committed = null; }
      if (!committed || Buffer.compare(committed, Buffer.from(file.contents)) !== 0) stale.push(file.path);
    }
  }
}
if (stale.length) {
  console.error(`the shipped bundle differs from what the sources build:\n  ${stale.join("\n  ")}\nrun \`npm run build\` in js/ and commit notebookcarto/static/`);
  process.exit(1);
}
console.log(check ? "bundle up to date" : `built ${targets.map((t) => t.outfile).join(", ")}`);
