// LOG_REQUESTS: which requests write the one request log line (all, only failed and slow, none).
import { afterEach, describe, expect, it, vi } from "vitest";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { faultyD1 } from "./helpers/d1-faults";

function requestLines(spy: { mock: { calls: unknown[][] } }): Array<{ status: number; path: string }> {
  return spy.mock.calls
    .map((args) => String(args[0]))
    .filter((line) => line.includes('"event":"request"'))
    .map((line) => JSON.parse(line) as { status: number; path: string });
}

describe("the request log line (LOG_REQUESTS)", () => {
  afterEach(() => vi.restoreAllMocks());

  it("logs every request by default", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    await callWithEnv({}, "GET", "/healthz");
    expect(requestLines(log)).toMatchObject([{ status: 200, path: "/healthz" }]);
  });

  it("in errors mode logs a failed (5xx) request and not a successful one", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    vi.spyOn(console, "error").mockImplementation(() => {});
    const user = await newUser();
    await callWithEnv({ LOG_REQUESTS: "errors" }, "GET", "/healthz");
    const failed = await callWithEnv({ LOG_REQUESTS: "errors", DB: faultyD1() }, "GET", "/v1/agents", {
      headers: user.headers,
    });
    expect(failed.status).toBe(503);
    expect(requestLines(log)).toMatchObject([{ status: 503, path: "/v1/agents" }]);
  });

  it("in none mode logs no request line, also for a failed request", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    vi.spyOn(console, "error").mockImplementation(() => {});
    const user = await newUser();
    await callWithEnv({ LOG_REQUESTS: "none" }, "GET", "/healthz");
    await callWithEnv({ LOG_REQUESTS: "none", DB: faultyD1() }, "GET", "/v1/agents", { headers: user.headers });
    expect(requestLines(log)).toEqual([]);
  });

  it("refuses an unknown mode as a configuration error", async () => {
    vi.spyOn(console, "log").mockImplementation(() => {});
    vi.spyOn(console, "error").mockImplementation(() => {});
    const res = await callWithEnv({ LOG_REQUESTS: "verbose" }, "GET", "/healthz");
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: "configuration_error" });
  });
});
