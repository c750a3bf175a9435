// The gateway as the Tail Worker of every agent's script. Loader mode: each loaded worker's
// `tails` is the LogTail entrypoint with the script's identity as ctx.props (set by the gateway,
// src/runtime/loader.ts). Namespace mode: every upload names the gateway in `tail_consumers`
// (src/runtime/namespace/upload.ts) and the default export's tail() handler (src/index.ts)
// receives the traces, naming each script by its tags. Both store through services/logs/ingest.ts.
import { WorkerEntrypoint } from "cloudflare:workers";
import { composeServices, type EntryContext } from "../compose";
import { type Env, getConfig } from "../env";
import { describeError, logError } from "../lib/logger";
import { hasContent } from "../runtime/traces";
import { ingestTraces, type ScriptIdentity } from "../services/logs/ingest";

export class LogTail extends WorkerEntrypoint<Env, Partial<ScriptIdentity>> {
  override async tail(events: TraceItem[]): Promise<void> {
    await storeTraces(events, this.env, this.ctx, this.ctx.props);
  }
}

/** The default export's tail() handler: traces of namespace scripts, named by their tags. */
export async function handleTail(events: TraceItem[], env: Env, ctx: ExecutionContext): Promise<void> {
  await storeTraces(events, env, ctx, undefined);
}

export async function storeTraces(
  events: TraceItem[],
  env: Env,
  ctx: EntryContext,
  props: Partial<ScriptIdentity> | undefined,
): Promise<void> {
  // Most invocations print nothing: their traces cost no configuration or services at all.
  if (!events.some(hasContent)) return;
  try {
    const services = composeServices(env, ctx, await getConfig(env));
    await ingestTraces(services, events, props);
  } catch (err) {
    // A tail has no caller to answer: the failure is the operator's to see.
    logError("agent_logs_tail_failed", { traces: events.length, error: describeError(err) });
  }
}
