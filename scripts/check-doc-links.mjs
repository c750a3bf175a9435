// `node scripts/check-doc-links.mjs`: the README and docs/ point only at things that exist. Every
// relative markdown link must name an existing file (and, with `#anchor`, an existing heading), and
// every repository path written in backticks (`src/…`, `scripts/…`, …) must exist, so moving code
// without updating the docs fails here instead of misleading the next reader.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
const markdownIn = (dir) =>
  existsSync(join(root, dir))
    ? readdirSync(join(root, dir))
        .filter((name) => name.endsWith(".md"))
        .map((name) => join(root, dir, name))
    : [];
const files = [join(root, "README.md"), ...markdownIn("docs"), ...markdownIn("bench/results")];

/** The text outside fenced code blocks: links and headings there are prose. */
function prose(text) {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```[^\n]*$/gm, "");
}

/** GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf(file) {
  const seen = new Map();
  const anchors = new Set();
  for (const [, heading] of prose(readFileSync(file, "utf8")).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = heading
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

const REPO_PATH = /^(?:src|scripts|tests|user-worker-template|migrations|bench|docs|cli)\/[\w./-]*$/;

const problems = [];
for (const file of files) {
  const where = relative(root, file);
  const text = prose(readFileSync(file, "utf8"));
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z]+:/i.test(target)) continue;
    const [path, anchor] = target.split("#");
    const resolved = path === "" ? file : resolve(dirname(file), path);
    if (!existsSync(resolved)) {
      problems.push(`${where}: link to a missing file: ${target}`);
    } else if (anchor !== undefined && statSync(resolved).isFile() && !anchorsOf(resolved).has(anchor)) {
      problems.push(`${where}: link to a missing heading: ${target}`);
    }
  }
  for (const [, code] of text.matchAll(/`([^`\s]+)`/g)) {
    const path = code.replace(/[/:,.]+$/, "");
    if (REPO_PATH.test(path) && !existsSync(join(root, path))) problems.push(`${where}: names a missing path: ${path}`);
  }
}

if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`doc links: ${files.length} files checked`);
