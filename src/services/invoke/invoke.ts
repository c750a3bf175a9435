// POST /v1/invoke/:agentId: a direct call. The call is routed and admitted (prepare.ts), the agent
// is called (call.ts), and its JSON answer is checked against invoke/v1 before it is returned: no
// run, no Durable Object, so the plain call stays as fast as calling the agent. The user's POST is
// never retried. The gateway's own measurement is recorded off the response path, once per call.
// (/stream and background runs are runs, made by the run's Durable Object: services/runs/.)
import { utf8 } from "../../crypto/encoding";
import type { ApiError } from "../../lib/errors";
import { loadDeploymentBundle } from "../deployments/bundle";
import {
  beforeDeadline,
  callAgent,
  type Invocation,
  invalidAnswer,
  invocationOf,
  MAX_AGENT_JSON_BYTES,
  readBounded,
  upstreamProblem,
} from "./call";
import { AgentResponseSchema, type InvokeRequest } from "./contract";
import { type InvokeDeps, type InvokeOptions, prepareInvocation } from "./prepare";

/** POST /v1/invoke/:agentId: a direct call to the agent (no run, no Durable Object). */
export async function invokeAgent(
  deps: InvokeDeps,
  agentId: string,
  body: InvokeRequest,
  opts: InvokeOptions = {},
): Promise<Response> {
  const { spec, headers, turn, deployment } = await prepareInvocation(deps, agentId, body, false, opts);
  const inv = invocationOf(deps, spec, { headers, loadBundle: () => loadDeploymentBundle(deps, deployment) });
  if (!turn) return callDirect(deps, inv);
  // A session's turn ends before the answer is returned, so the client's next turn finds it free.
  try {
    return await callDirect(deps, inv);
  } finally {
    await turn.release(true);
  }
}

async function callDirect(deps: InvokeDeps, inv: Invocation): Promise<Response> {
  const { headers, abort } = inv;
  const failWith = (err: ApiError): never => {
    inv.measure({ ok: false, errorCode: err.code, bytesOut: 0 });
    throw err;
  };

  const called = await callAgent(deps, inv);
  if ("problem" in called) return failWith(called.problem);
  const { upstream, deadline } = called;

  let text: string;
  try {
    text = await beforeDeadline(readBounded(upstream, MAX_AGENT_JSON_BYTES), deadline, abort);
  } catch (err) {
    return failWith(upstreamProblem(err, inv.ref, headers));
  }
  try {
    AgentResponseSchema.parse(JSON.parse(text));
  } catch {
    return failWith(invalidAnswer(upstream, text, headers));
  }
  inv.measure({ ok: true, bytesOut: utf8.encode(text).byteLength });
  return new Response(text, { status: 200, headers: { ...headers, "content-type": "application/json" } });
}
