#!/usr/bin/env node
// The `webhost` command. Plain ES modules (no build step), so it runs as shipped on Node 20 and later.
import { main } from "../src/main.mjs";

process.exitCode = await main(process.argv);
