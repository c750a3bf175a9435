// Bundling and the deploy request it becomes (Node's test runner: runs on Node 20 and 22).
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { validateAgentConfig } from "../src/agent-config.mjs";
import { bundleAgent } from "../src/bundle.mjs";
import { deployPayload, isModulesUnsupported, legacyCompatible } from "../src/deploy.mjs";
import { ApiError } from "../src/output.mjs";

/** A project with a TypeScript entry, a second file, an npm package (CommonJS) and assets. */
function project(files) {
  const dir = mkdtempSync(join(tmpdir(), "webhost-bundle-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

const AGENT = {
  "src/index.ts": `import { greet } from "./greet";
import shout from "shout";
import prompt from "./prompt.txt";
import table from "./table.json";
export default { async fetch(req: Request): Promise<Response> { return Response.json({ output: { text: shout(greet("x")) + prompt + table.n } }); } };`,
  "src/greet.ts": 'export const greet = (name: string): string => "hello " + name;',
  "src/prompt.txt": "be brief",
  "src/table.json": '{ "n": 7 }',
  "node_modules/shout/package.json": '{ "name": "shout", "version": "1.0.0", "main": "index.js" }',
  "node_modules/shout/index.js": "module.exports = (s) => s.toUpperCase() + '!';",
};

test("a TypeScript agent, its second file and an npm package bundle into one ES module; a text import stays its own module", async () => {
  const dir = project(AGENT);
  const bundle = await bundleAgent({ dir, main: "src/index.ts" });
  assert.equal(bundle.mainModuleName, "index.js");
  assert.deepEqual(
    bundle.modules.map((m) => [m.name, m.type, m.encoding]),
    [
      ["index.js", "esm", undefined],
      ["src/prompt.txt", "text", undefined],
    ],
  );
  const [main, text] = bundle.modules;
  assert.match(main.content, /toUpperCase/, "the npm package is inside the bundle");
  assert.match(main.content, /"hello " \+ name/, "the second file is inside the bundle");
  assert.match(main.content, /from "\.\/src\/prompt\.txt"/, "the text module is imported by its module name");
  assert.doesNotMatch(main.content, /: string/, "TypeScript is compiled");
  assert.equal(text.content, "be brief");
  assert.equal(bundle.bytes, Buffer.byteLength(main.content) + 8);

  // The bundle really runs: import it (the text module stubbed by the same name) and call fetch.
  const out = project({
    "src/prompt.txt.mjs": 'export default "!"',
    "index.mjs": main.content.replace("./src/prompt.txt", "./src/prompt.txt.mjs"),
  });
  const mod = await import(join(out, "index.mjs"));
  const res = await mod.default.fetch(new Request("https://x/"));
  assert.deepEqual(await res.json(), { output: { text: "HELLO X!!7" } });
});

test("wasm and binary imports become base64 wasm and data modules", async () => {
  const wasm = Buffer.from([0, 97, 115, 109, 1, 0, 0, 0]);
  const dir = project({
    "src/index.ts": `import mod from "./add.wasm"; import blob from "../assets/blob.bin";
export default { fetch() { return new Response(String(mod) + String(blob)); } };`,
  });
  writeFileSync(join(dir, "src/add.wasm"), wasm);
  mkdirSync(join(dir, "assets"));
  writeFileSync(join(dir, "assets/blob.bin"), Buffer.from([1, 2, 3]));
  const bundle = await bundleAgent({ dir, main: "src/index.ts" });
  assert.deepEqual(
    bundle.modules.slice(1).map((m) => [m.name, m.type, m.encoding, m.content]),
    [
      ["src/add.wasm", "wasm", "base64", wasm.toString("base64")],
      ["assets/blob.bin", "data", "base64", "AQID"],
    ],
  );
  assert.match(bundle.modules[0].content, /from "\.\/src\/add\.wasm"/);
  assert.match(bundle.modules[0].content, /from "\.\/assets\/blob\.bin"/);
});

test("Node built-ins: left to the runtime with nodejs_compat, a clear error without it", async () => {
  const dir = project({
    "src/index.ts": `import { Buffer } from "node:buffer"; import { EventEmitter } from "events";
export default { fetch() { return new Response(Buffer.from("ok").toString() + typeof EventEmitter); } };`,
  });
  const bundle = await bundleAgent({ dir, main: "src/index.ts", compatibilityFlags: ["nodejs_compat"] });
  assert.match(bundle.modules[0].content, /from "node:buffer"/);
  assert.match(bundle.modules[0].content, /from "events"/);
  await assert.rejects(bundleAgent({ dir, main: "src/index.ts" }), /add "nodejs_compat" to compatibilityFlags/);
});

test("a syntax error fails bundling with the file and line", async () => {
  const dir = project({ "src/index.ts": "export default {\n  fetch( {\n" });
  await assert.rejects(bundleAgent({ dir, main: "src/index.ts" }), /bundling failed:\n {2}src\/index\.ts:3:0: /);
});

test("the deploy request carries modules, mainModuleName and the config's fields", async () => {
  const dir = project(AGENT);
  const bundle = await bundleAgent({ dir, main: "src/index.ts" });
  const config = validateAgentConfig({
    name: "demo",
    main: "src/index.ts",
    compatibilityDate: "2026-08-01",
    compatibilityFlags: ["nodejs_compat"],
    invokePath: "/invoke",
    smokeTest: { request: { messages: [{ role: "user", content: "hi" }] }, expectStatus: 200 },
  });
  const body = deployPayload(config, bundle);
  assert.deepEqual(Object.keys(body), [
    "modules",
    "mainModuleName",
    "compatibilityDate",
    "invokePath",
    "compatibilityFlags",
    "smokeTest",
  ]);
  assert.equal(body.mainModuleName, "index.js");
  assert.equal(body.modules[0].type, "esm");
  assert.deepEqual(body.compatibilityFlags, ["nodejs_compat"]);
  assert.equal(legacyCompatible(config, bundle), false);
});

test("the single-module fallback is used only for a gateway that refuses `modules` as an unknown field", async () => {
  const dir = project({ "src/index.ts": "export default { fetch() { return new Response('ok'); } };" });
  const bundle = await bundleAgent({ dir, main: "src/index.ts" });
  const config = validateAgentConfig({ name: "demo", compatibilityFlags: [] });
  assert.equal(legacyCompatible(config, bundle), true);
  assert.deepEqual(Object.keys(deployPayload(config, bundle, { legacy: true })), ["moduleCode", "mainModuleName"]);
  const unknownField = new ApiError({
    status: 400,
    code: "validation_failed",
    errors: [{ location: "body", message: 'Unrecognized key: "modules"' }],
  });
  assert.equal(isModulesUnsupported(unknownField), true);
  const badModule = new ApiError({
    status: 400,
    code: "validation_failed",
    errors: [{ location: "body.modules.0.name", message: "must be a relative path" }],
  });
  assert.equal(isModulesUnsupported(badModule), false);
});

test("agent.config.json: unknown fields and wrong types are named", () => {
  assert.throws(
    () => validateAgentConfig({ name: "", entry: "x", compatibilityFlags: "nodejs_compat", invokePath: "invoke" }),
    (err) => {
      assert.match(err.message, /unknown field "entry"/);
      assert.match(err.message, /"name" must be/);
      assert.match(err.message, /"compatibilityFlags" must be an array/);
      assert.match(err.message, /"invokePath" must start with/);
      return true;
    },
  );
  assert.equal(validateAgentConfig({ name: " a " }).main, "src/index.ts");
});
