// Builds the web sample into one folder of static files: index.html, styles.css, app.js.
//   node examples/web/build.mjs [--outdir DIR]     (default examples/web/dist)
// Serve that folder with a config.json beside it (see README.md); `make run` does both.
import { cp, mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { outdir: { type: "string" } } });
const outdir = resolve(values.outdir ?? resolve(here, "dist"));

await mkdir(outdir, { recursive: true });
await build({
  entryPoints: [resolve(here, "src/main.ts")],
  outfile: resolve(outdir, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "warning",
});
await cp(resolve(here, "public"), outdir, { recursive: true });
console.log(`web sample built in ${outdir}`);
