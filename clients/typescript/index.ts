// A typed client for the webhost.systems API: openapi-fetch over the types openapi-typescript
// generates from the OpenAPI document (schema.d.ts; `node scripts/generate-client.mjs`). Every
// operation, parameter, body, response header, problem code and stream event is typed from the
// document the server serves at /openapi.json.
//
//   const api = createApiClient({ baseUrl: "https://api.webhost.systems", token });
//   const { data, error } = await api.POST("/v1/agents", { body: { name: "support-bot" } });
//   if (error) console.error(error.code); // a ProblemCode
import createClient, { type Client } from "openapi-fetch";
import type { components, operations, paths } from "./schema";

export type { components, operations, paths };
export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];
export type ProblemCode = Problem["code"];
export type InvokeStreamEvent = Schemas["InvokeStreamEvent"];
export type ApiClient = Client<paths>;

export type ApiClientOptions = {
  /** e.g. https://api.webhost.systems (no trailing slash) */
  baseUrl: string;
  /** A user's JWT or an API key (`whk_…`). */
  token: string;
  fetch?: (request: Request) => Promise<Response>;
};

export function createApiClient(options: ApiClientOptions): ApiClient {
  return createClient<paths>({
    baseUrl: options.baseUrl,
    headers: { authorization: `Bearer ${options.token}` },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
}

/**
 * The events of an invoke stream (`invokeAgentStream`, read with `parseAs: "stream"`), each
 * typed by its `event` name: `delta`…, then `done` (the invoke/v1 response) or `error`.
 */
export async function* invokeStreamEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<InvokeStreamEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    pending += decoder.decode(value, { stream: true }).replaceAll("\r\n", "\n");
    let end = pending.indexOf("\n\n");
    while (end !== -1) {
      const lines = pending.slice(0, end).split("\n");
      pending = pending.slice(end + 2);
      end = pending.indexOf("\n\n");
      const event = lines
        .find((l) => l.startsWith("event:"))
        ?.slice(6)
        .trim();
      const data = lines
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      if (event === "delta" || event === "done" || event === "error") {
        yield { event, data: JSON.parse(data) } as InvokeStreamEvent;
      }
    }
  }
}
