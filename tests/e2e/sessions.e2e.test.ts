// Sessions end to end: real HTTP against `wrangler dev`, with the SessionKeeper Durable Object
// running as it does there. A session stays on the deployment of its first turn across a new
// deploy and a rollback (x-deployment-id says so); a second concurrent turn is 409 session_busy;
// a session idle past the run's TTL (SESSION_IDLE_SECONDS, set by global-setup.ts) starts fresh;
// a disabled agent's session is 409 session_deployment_gone; a stranger gets 404 on every route.
import { beforeAll, describe, expect, it } from "vitest";
import { readSse, type SseEvent } from "../../scripts/lib/sse.ts";
import { sessionAgent as sessionAgentModule } from "../fixtures/modules.ts";
import { SESSION_IDLE_SECONDS } from "./context.ts";
import { api, expectJson, expectProblem, newUser, type User, waitFor } from "./harness";

/** The session agent (fixtures/modules.ts): its streamed deltas come 150 ms apart. */
const sessionAgent = (tag: string) => sessionAgentModule(tag, { deltaGapMs: 150 });

type Session = {
  id: string;
  agentId: string;
  deploymentId: string;
  createdAt: number;
  lastUsedAt: number;
  expiresAt: number;
  turns: number;
  busy: boolean;
};

const body = (sessionId?: string, content = "hello") => ({
  messages: [{ role: "user", content }],
  ...(sessionId === undefined ? {} : { sessionId }),
});

let owner: User;
let agentId: string;

async function deploy(tag: string): Promise<string> {
  const { deployment } = await expectJson<{ deployment: { id: string } }>(
    await api("POST", `/v1/agents/${agentId}/deploy`, { user: owner, body: { moduleCode: sessionAgent(tag) } }),
    202,
  );
  await waitFor(`${tag} to become active`, async () => {
    const res = await api("GET", `/v1/agents/${agentId}/deployments/${deployment.id}`, { user: owner });
    const { deployment: d } = await expectJson<{ deployment: { status: string; errorMessage: string | null } }>(
      res,
      200,
    );
    if (d.status === "failed") throw new Error(`deploy failed: ${d.errorMessage}`);
    return d.status === "active" ? true : undefined;
  });
  await waitFor(`${tag} to serve`, async () => ((await answer()).servedBy === deployment.id ? true : undefined));
  return deployment.id;
}

async function answer(sessionId?: string, user = owner) {
  const res = await api("POST", `/v1/invoke/${agentId}`, { user, body: body(sessionId) });
  const { output } = await expectJson<{ output: { text: string } }>(res, 200);
  return { text: output.text, servedBy: res.headers.get("x-deployment-id") };
}

async function session(id: string): Promise<Session> {
  return (
    await expectJson<{ session: Session }>(
      await api("GET", `/v1/agents/${agentId}/sessions/${encodeURIComponent(id)}`, { user: owner }),
      200,
    )
  ).session;
}

let v1: string;

beforeAll(async () => {
  owner = await newUser("sessions-owner");
  ({
    agent: { id: agentId },
  } = await expectJson<{ agent: { id: string } }>(
    await api("POST", "/v1/agents", { user: owner, body: { name: `sessions-${crypto.randomUUID().slice(0, 8)}` } }),
    201,
  ));
  v1 = await deploy("v1");
});

describe("sessions over HTTP", () => {
  it("keeps a session on its first deployment across a new deploy and a rollback", async () => {
    const chat = `chat-${crypto.randomUUID().slice(0, 8)}`;
    expect(await answer(chat)).toEqual({ text: `v1 ${chat}`, servedBy: v1 });
    const v2 = await deploy("v2");
    expect(await answer(chat)).toEqual({ text: `v1 ${chat}`, servedBy: v1 });
    const later = `later-${crypto.randomUUID().slice(0, 8)}`;
    expect(await answer(later)).toEqual({ text: `v2 ${later}`, servedBy: v2 });

    await expectJson(await api("POST", `/v1/agents/${agentId}/deployments/${v1}/activate`, { user: owner }), 200);
    await waitFor("the rollback to serve", async () => ((await answer()).servedBy === v1 ? true : undefined));
    expect(await answer(later)).toEqual({ text: `v2 ${later}`, servedBy: v2 });
    const streamed = await api("POST", `/v1/invoke/${agentId}/stream`, { user: owner, body: body(later, "count 2") });
    expect(streamed.headers.get("x-deployment-id")).toBe(v2);
    const events: SseEvent[] = [];
    for await (const e of readSse(streamed.body!)) events.push(e);
    expect(JSON.parse(events.at(-1)!.data)).toEqual({ output: { text: `v2 ${later}` } });

    expect(await session(chat)).toMatchObject({ id: chat, agentId, deploymentId: v1, turns: 2, busy: false });
    expect(await session(later)).toMatchObject({ deploymentId: v2, turns: 3 });
  });

  it("answers a second concurrent turn 409 session_busy, and the next turn after it ends 200", async () => {
    const { session: s } = await expectJson<{ session: Session }>(
      await api("POST", `/v1/agents/${agentId}/sessions`, { user: owner }),
      201,
    );
    expect(s.id).toMatch(/^ses_/);
    const res = await api("POST", `/v1/invoke/${agentId}/stream`, { user: owner, body: body(s.id, "count 4") });
    const events = readSse(res.body!);
    expect((await events.next()).value?.id).toBe("1");
    const busy = await api("POST", `/v1/invoke/${agentId}`, { user: owner, body: body(s.id) });
    await expectProblem(busy, 409, "session_busy");
    expect(busy.headers.get("retry-after")).toBe("1");
    expect((await session(s.id)).busy).toBe(true);
    for await (const _ of events) {
    }
    expect((await answer(s.id)).text).toBe(`v1 ${s.id}`);
    expect(await session(s.id)).toMatchObject({ turns: 2, busy: false, deploymentId: s.deploymentId });
  });

  it("starts an expired session fresh on the active deployment", async () => {
    const idle = `idle-${crypto.randomUUID().slice(0, 8)}`;
    const first = await answer(idle);
    const before = await session(idle);
    expect(before.expiresAt - before.lastUsedAt).toBe(SESSION_IDLE_SECONDS * 1000);
    const v3 = await deploy("v3");
    expect(await answer(idle)).toEqual(first);
    await new Promise((r) => setTimeout(r, SESSION_IDLE_SECONDS * 1000 + 300));
    await expectProblem(await api("GET", `/v1/agents/${agentId}/sessions/${idle}`, { user: owner }), 404, "not_found");
    expect(await answer(idle)).toEqual({ text: `v3 ${idle}`, servedBy: v3 });
    const after = await session(idle);
    expect(after).toMatchObject({ deploymentId: v3, turns: 1 });
    expect(after.createdAt).toBeGreaterThan(before.createdAt);
  }, 30_000);

  it("answers a stranger 404 on every session route, and bad input 400", async () => {
    const shared = `shared-${crypto.randomUUID().slice(0, 8)}`;
    await answer(shared);
    const stranger = await newUser("sessions-stranger");
    for (const [method, path] of [
      ["POST", `/v1/agents/${agentId}/sessions`],
      ["GET", `/v1/agents/${agentId}/sessions/${shared}`],
      ["DELETE", `/v1/agents/${agentId}/sessions/${shared}`],
    ] as const) {
      await expectProblem(await api(method, path, { user: stranger }), 404, "not_found");
    }
    await expectProblem(
      await api("POST", `/v1/invoke/${agentId}`, { user: stranger, body: body(shared) }),
      404,
      "not_found",
    );
    expect((await session(shared)).turns).toBe(1);

    await expectProblem(
      await api("POST", `/v1/agents/${agentId}/sessions`, { user: owner, body: { deploymentId: v1 } }),
      400,
      "validation_failed",
    );
    await expectProblem(
      await api("GET", `/v1/agents/${agentId}/sessions/${"s".repeat(201)}`, { user: owner }),
      400,
      "validation_failed",
    );
  });

  it("ends a session with DELETE; a disabled agent's session is 409 session_deployment_gone", async () => {
    const done = `done-${crypto.randomUUID().slice(0, 8)}`;
    await answer(done);
    expect((await api("DELETE", `/v1/agents/${agentId}/sessions/${done}`, { user: owner })).status).toBe(204);
    await expectProblem(await api("GET", `/v1/agents/${agentId}/sessions/${done}`, { user: owner }), 404, "not_found");

    const kept = `kept-${crypto.randomUUID().slice(0, 8)}`;
    await answer(kept);
    await expectJson(await api("POST", `/v1/agents/${agentId}/disable`, { user: owner }), 200);
    await waitFor("the disable to take effect", async () => {
      const res = await api("POST", `/v1/invoke/${agentId}`, { user: owner, body: body() });
      if (res.status === 200) return undefined;
      await expectProblem(res, 409, "agent_disabled");
      return true;
    });
    await expectProblem(
      await api("POST", `/v1/invoke/${agentId}`, { user: owner, body: body(kept) }),
      409,
      "session_deployment_gone",
    );
  });
});
