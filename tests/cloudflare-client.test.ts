// The Cloudflare API client's envelope parsing and failure classification, at the edges a real
// API (or a proxy in front of it) can produce.
import { describe, expect, it } from "vitest";
import { CloudflareClient, type FetchLike } from "../src/cloudflare/client";
import { parseCloudflareApiConfig } from "../src/cloudflare/config";
import { CloudflareApiError, isNotFound, isRetryable } from "../src/cloudflare/errors";

const TOKEN = "client-test-token-0123456789";

function clientAnswering(respond: FetchLike, timeoutMs = 1000) {
  const seen: Request[] = [];
  const client = new CloudflareClient(
    {
      baseUrl: "https://api.cloudflare.test/client/v4",
      accountId: "0123456789abcdef0123456789abcdef",
      apiToken: TOKEN,
      timeoutMs,
    },
    {
      fetch: (req) => {
        seen.push(req);
        return respond(req);
      },
    },
  );
  return { client, seen };
}

async function apiError(promise: Promise<unknown>): Promise<CloudflareApiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CloudflareApiError);
  return err as CloudflareApiError;
}

const envelope = (body: object, status = 200) =>
  new Response(JSON.stringify({ errors: [], messages: [], ...body }), {
    status,
    headers: { "content-type": "application/json" },
  });

describe("Cloudflare API client", () => {
  it("sends the bearer token and returns the envelope's result", async () => {
    const { client, seen } = clientAnswering(async () => envelope({ success: true, result: { id: "x" } }));
    const result = await client.request({ operation: "get x", method: "GET", path: client.accountPath("/x") });
    expect(result).toEqual({ id: "x" });
    expect(seen[0]?.url).toBe("https://api.cloudflare.test/client/v4/accounts/0123456789abcdef0123456789abcdef/x");
    expect(seen[0]?.headers.get("authorization")).toBe(`Bearer ${TOKEN}`);
  });

  it("treats success=false as a failure even on HTTP 200, with Cloudflare's codes", async () => {
    const { client } = clientAnswering(async () =>
      envelope({ success: false, result: null, errors: [{ code: 10021, message: "Script validation failed" }] }),
    );
    const err = await apiError(client.request({ operation: "upload", method: "PUT", path: "/p" }));
    expect(err).toMatchObject({ status: 200, codes: [10021], retryable: false, kind: "http" });
    expect(err.message).toContain("Script validation failed (code 10021)");
  });

  it("reports every error of the envelope", async () => {
    const { client } = clientAnswering(async () =>
      envelope(
        {
          success: false,
          errors: [
            { code: 10021, message: "first" },
            { code: 10027, message: "second" },
          ],
        },
        400,
      ),
    );
    const err = await apiError(client.request({ operation: "upload", method: "PUT", path: "/p" }));
    expect(err.codes).toEqual([10021, 10027]);
    expect(err.message).toContain("first (code 10021); second (code 10027)");
  });

  it("calls a 2xx answer that is not an envelope an invalid response, not a success", async () => {
    const { client } = clientAnswering(async () => new Response("<html>ok</html>", { status: 200 }));
    const err = await apiError(client.request({ operation: "get", method: "GET", path: "/p" }));
    expect(err).toMatchObject({ kind: "invalid_response", status: 200, retryable: false });
  });

  it("accepts an empty 2xx body (Delete Worker has none) as success", async () => {
    const { client } = clientAnswering(async () => new Response(null, { status: 200 }));
    expect(await client.request({ operation: "delete", method: "DELETE", path: "/p" })).toBeNull();
  });

  it("recognises Cloudflare's not-found code, but not a routing 404", () => {
    const notFound = new CloudflareApiError({
      operation: "delete",
      kind: "http",
      status: 404,
      errors: [{ code: 10007, message: "not found" }],
    });
    const misrouted = new CloudflareApiError({
      operation: "delete",
      kind: "http",
      status: 404,
      errors: [{ code: 7003, message: "Could not route" }],
    });
    expect(isNotFound(notFound)).toBe(true);
    expect(isNotFound(misrouted)).toBe(false);
  });

  it("marks 408, 429, 5xx, network errors and timeouts retryable and other 4xx not", () => {
    expect([400, 401, 403, 404, 409, 413].map((s) => isRetryable("http", s))).toEqual(Array(6).fill(false));
    expect([408, 429, 500, 502, 503, 504].map((s) => isRetryable("http", s))).toEqual(Array(6).fill(true));
    expect(isRetryable("network", null)).toBe(true);
    expect(isRetryable("timeout", null)).toBe(true);
  });

  it("aborts the request when the deadline passes and says it timed out", async () => {
    let aborted = false;
    const { client } = clientAnswering(
      (req) =>
        new Promise((_, reject) =>
          req.signal.addEventListener("abort", () => {
            aborted = true;
            reject(new DOMException("aborted", "AbortError"));
          }),
        ),
      100,
    );
    const err = await apiError(client.request({ operation: "slow", method: "GET", path: "/p" }));
    expect(err).toMatchObject({ kind: "timeout", status: null, retryable: true });
    expect(aborted).toBe(true);
  });

  it("defaults the base URL to Cloudflare's v4 endpoint and strips a trailing slash", () => {
    const base = { CLOUDFLARE_ACCOUNT_ID: "0123456789abcdef0123456789abcdef", CLOUDFLARE_API_TOKEN: TOKEN };
    expect(parseCloudflareApiConfig(base).baseUrl).toBe("https://api.cloudflare.com/client/v4");
    expect(
      parseCloudflareApiConfig({ ...base, CLOUDFLARE_API_BASE_URL: "http://127.0.0.1:8794/client/v4/" }).baseUrl,
    ).toBe("http://127.0.0.1:8794/client/v4");
  });
});
