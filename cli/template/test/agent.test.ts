// Calls the handler directly, as the gateway would: JSON, then server-sent events.
import { describe, expect, it } from "vitest";
import agent from "../src/index";

const ctx = { waitUntil: (_p: Promise<unknown>) => {} };
const invoke = (accept: string) =>
  agent.fetch(
    new Request("https://agent.internal/invoke", {
      method: "POST",
      headers: { "content-type": "application/json", accept },
      body: JSON.stringify({ messages: [{ role: "user", content: "hello there" }] }),
    }),
    {},
    ctx,
  );

describe("agent", () => {
  it("answers invoke/v1 JSON", async () => {
    const res = await invoke("application/json");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ output: { text: "you said: hello there" } });
  });

  it("streams deltas and then done", async () => {
    const text = await (await invoke("text/event-stream")).text();
    const deltas = [...text.matchAll(/event: delta\ndata: (.*)\n/g)].map((m) => JSON.parse(m[1]!).text);
    expect(deltas.join("")).toBe("you said: hello there");
    expect(text).toMatch(/event: done\ndata: .*"you said: hello there"/);
  });

  it("refuses a body that is not invoke/v1", async () => {
    const res = await agent.fetch(
      new Request("https://agent.internal/invoke", { method: "POST", body: "{}" }),
      {},
      ctx,
    );
    expect(res.status).toBe(400);
  });
});
