// Runtime faults as a client sees them through POST /v1/invoke/:agentId and /stream: script not
// found, a resource limit, an exception, a hang (504 at INVOKE_TIMEOUT_MS), garbage answers, and
// never a second POST to the user's worker. The namespace mechanism runs with a fake DISPATCHER
// (the real one cannot run here), so every failure kind Workers for Platforms reports can be
// produced; the loader mechanism runs the real user code.
import { describe, expect, it } from "vitest";
import { MAX_AGENT_JSON_BYTES } from "../src/services/invoke/call";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { seedDeployment } from "./helpers/deployments";
import { call, expectProblem, json } from "./helpers/http";
import { namespaceEnv } from "./helpers/namespace";
import { collectSse } from "./helpers/sse";

type Dispatch = (request: Request) => Promise<Response>;

/** A fake DISPATCHER that counts get() and fetch() calls; `onGet` may throw like the real get(). */
function countingDispatcher(dispatch: Dispatch, onGet?: () => void) {
  const counts = { get: 0, fetch: 0 };
  const requests: Request[] = [];
  return {
    counts,
    requests,
    get() {
      counts.get++;
      onGet?.();
      return {
        fetch(request: Request) {
          counts.fetch++;
          requests.push(request);
          return dispatch(request);
        },
      };
    },
  };
}

function namespaceMode(dispatcher: ReturnType<typeof countingDispatcher>, extra: Record<string, string> = {}) {
  return { DISPATCH_MODE: "namespace", DISPATCHER: dispatcher, ...namespaceEnv(), ...extra };
}

const never = () => new Promise<Response>(() => {});
const reject = (err: Error) => () => Promise.reject(err);
const answer = (body: BodyInit | null, init: ResponseInit) => () => Promise.resolve(new Response(body, init));

/** A 200 JSON answer whose body never finishes. */
const hangingBody = () =>
  Promise.resolve(
    new Response(
      new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"output":'));
        },
      }),
      { headers: { "content-type": "application/json" } },
    ),
  );

const FAULTS: Array<{
  name: string;
  dispatch: Dispatch;
  onGet?: () => void;
  status: number;
  code: string;
  detail?: RegExp;
}> = [
  {
    name: "script not found (from get)",
    dispatch: never,
    onGet: () => {
      throw new Error("Worker not found.");
    },
    status: 502,
    code: "upstream_not_found",
  },
  {
    name: "script not found (from fetch)",
    dispatch: reject(new Error("Worker not found: webhost-dep-x")),
    status: 502,
    code: "upstream_not_found",
  },
  {
    name: "CPU limit exceeded",
    dispatch: reject(new Error("Worker exceeded CPU time limit.")),
    status: 502,
    code: "upstream_limit_exceeded",
  },
  {
    name: "subrequest limit exceeded",
    dispatch: reject(new Error("Too many subrequests by single Worker invocation.")),
    status: 502,
    code: "upstream_limit_exceeded",
  },
  {
    name: "an exception",
    dispatch: reject(new TypeError("Cannot read properties of undefined (reading 'x')")),
    status: 502,
    code: "upstream_exception",
    detail: /Cannot read properties of undefined/,
  },
  { name: "a hang", dispatch: never, status: 504, code: "upstream_timeout", detail: /250 ms/ },
  { name: "a body that never ends", dispatch: hangingBody, status: 504, code: "upstream_timeout" },
  {
    name: "an HTML page",
    dispatch: answer("<html><body>502 Bad Gateway</body></html>", { headers: { "content-type": "text/html" } }),
    status: 502,
    code: "upstream_invalid_response",
  },
  {
    name: "broken JSON",
    dispatch: answer('{"output": {"text": "unterminated', { headers: { "content-type": "application/json" } }),
    status: 502,
    code: "upstream_invalid_response",
  },
  {
    name: "binary garbage",
    dispatch: answer(crypto.getRandomValues(new Uint8Array(512)), {
      headers: { "content-type": "application/octet-stream" },
    }),
    status: 502,
    code: "upstream_invalid_response",
  },
  { name: "an empty body", dispatch: answer(null, { status: 200 }), status: 502, code: "upstream_invalid_response" },
  {
    name: `an answer over ${MAX_AGENT_JSON_BYTES} bytes`,
    dispatch: answer(JSON.stringify({ output: { text: "x".repeat(MAX_AGENT_JSON_BYTES + 1) } }), {
      headers: { "content-type": "application/json" },
    }),
    status: 502,
    code: "upstream_invalid_response",
  },
  {
    name: "the agent's own 503",
    dispatch: answer("overloaded", { status: 503 }),
    status: 502,
    code: "upstream_error",
  },
];

describe("runtime faults through the gateway (namespace mechanism)", () => {
  for (const fault of FAULTS) {
    it(`answers ${fault.name} with ${fault.status} ${fault.code}, having called the agent exactly once per request`, async () => {
      const dep = await seedDeployment();
      for (const path of [`/v1/invoke/${dep.agentId}`, `/v1/invoke/${dep.agentId}/stream`]) {
        const dispatcher = countingDispatcher(fault.dispatch, fault.onGet);
        const res = await callWithEnv(namespaceMode(dispatcher, { INVOKE_TIMEOUT_MS: "250" }), "POST", path, {
          headers: dep.owner.headers,
          body: userMessage("hello"),
        });
        expect(res.headers.get("x-deployment-id")).toBe(dep.deploymentId);
        const problem = await expectProblem(res, fault.status, fault.code);
        if (fault.detail) expect(problem.detail).toMatch(fault.detail);
        // Never retried: one get(), and one fetch() unless get() itself failed.
        expect(dispatcher.counts, path).toEqual({ get: 1, fetch: fault.onGet ? 0 : 1 });
      }
    });
  }

  it("aborts the request to a hung agent when the timeout fires", async () => {
    const dep = await seedDeployment();
    const dispatcher = countingDispatcher(never);
    const res = await callWithEnv(
      namespaceMode(dispatcher, { INVOKE_TIMEOUT_MS: "200" }),
      "POST",
      `/v1/invoke/${dep.agentId}`,
      {
        headers: dep.owner.headers,
        body: userMessage("hello"),
      },
    );
    await expectProblem(res, 504, "upstream_timeout");
    expect(dispatcher.requests).toHaveLength(1);
    expect(dispatcher.requests[0]!.signal.aborted).toBe(true);
  });

  it("aborts the request to an agent whose stream outlives the tier's streamSeconds", async () => {
    const dep = await seedDeployment();
    const enc = new TextEncoder();
    let bodyCancelled = false;
    const dispatcher = countingDispatcher(async () => {
      const endless = new ReadableStream<Uint8Array>({
        async pull(c) {
          await new Promise((r) => setTimeout(r, 100));
          c.enqueue(enc.encode('event: delta\ndata: {"text":"tick"}\n\n'));
        },
        cancel() {
          bodyCancelled = true;
        },
      });
      return new Response(endless, { headers: { "content-type": "text/event-stream" } });
    });
    const res = await callWithEnv(
      namespaceMode(dispatcher, { TIER_LIMITS: JSON.stringify({ free: { streamSeconds: 1 } }) }),
      "POST",
      `/v1/invoke/${dep.agentId}/stream`,
      { headers: dep.owner.headers, body: userMessage("hello") },
    );
    const events = await collectSse(res);
    expect(events.at(-1)).toMatchObject({ event: "error", data: { code: "stream_time_limit" } });
    expect(dispatcher.requests).toHaveLength(1);
    expect(dispatcher.requests[0]!.signal.aborted).toBe(true);
    expect(bodyCancelled).toBe(true);
  });

  it("passes a healthy answer through, with one call, so the fakes above are not what fails", async () => {
    const dep = await seedDeployment();
    const dispatcher = countingDispatcher(async (request) => {
      const body = (await request.json()) as { messages: Array<{ content: string }> };
      return Response.json({ output: { text: `echo ${body.messages[0]!.content}` } });
    });
    const res = await callWithEnv(namespaceMode(dispatcher), "POST", `/v1/invoke/${dep.agentId}`, {
      headers: dep.owner.headers,
      body: userMessage("hello"),
    });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ output: { text: "echo hello" } });
    expect(dispatcher.counts).toEqual({ get: 1, fetch: 1 });
  });
});

/** Counts POSTs; "hang" never answers, "throw" throws, "count" answers how many came before it. */
const COUNTS_HANGS_THROWS = `let posts = 0;
export default {
  async fetch(req) {
    if (req.method === "GET") return new Response("ok");
    posts++;
    const text = (await req.json()).messages.at(-1).content;
    if (text === "hang") return new Promise(() => {});
    if (text === "throw") throw new Error("thrown on purpose");
    return Response.json({ output: { text: String(posts - 1) } });
  },
};`;

describe("runtime faults through the gateway (loader mechanism, real user code)", () => {
  it("sends the user's POST once, whether the agent hangs past the timeout or throws", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id, { moduleCode: COUNTS_HANGS_THROWS });
    const hung = await callWithEnv({ INVOKE_TIMEOUT_MS: "250" }, "POST", `/v1/invoke/${agent.id}`, {
      headers,
      body: userMessage("hang"),
    });
    await expectProblem(hung, 504, "upstream_timeout");
    const hungStream = await callWithEnv({ INVOKE_TIMEOUT_MS: "250" }, "POST", `/v1/invoke/${agent.id}/stream`, {
      headers,
      body: userMessage("hang"),
    });
    await expectProblem(hungStream, 504, "upstream_timeout");
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("throw") }),
      502,
      "upstream_exception",
    );
    const counted = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("count") });
    expect((await json(counted)).output.text).toBe("3");
  });
});
