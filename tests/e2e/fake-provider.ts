// A fake OpenAI-compatible model provider on 127.0.0.1 for the e2e run: POST /v1/chat/completions
// answers JSON (usage 11 + 3 tokens) or, with `stream: true`, three SSE chunks CHUNK_GAP_MS apart
// ending with a usage chunk (7 + 2) when `stream_options.include_usage` is set; GET /hello answers
// text. It remembers the authorization header of every request (GET /__seen lists them).
import { createServer, type Server } from "node:http";

export const FAKE_PROVIDER_KEY = "sk-e2e-platform-key";
export const CHUNK_GAP_MS = 150;

export type FakeProvider = { baseUrl: string; stop(): Promise<void> };

export async function startFakeProvider(): Promise<FakeProvider> {
  const seen: Array<{ path: string; authorization: string | null; includeUsage: boolean | null }> = [];
  const server: Server = createServer((req, res) => {
    let text = "";
    const decoder = new TextDecoder();
    req.on("data", (c) => {
      text += decoder.decode(c, { stream: true });
    });
    req.on("end", () => {
      const path = req.url ?? "/";
      if (path === "/__seen") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(seen));
        return;
      }
      const authorization = req.headers.authorization ?? null;
      if (path === "/v1/chat/completions" && req.method === "POST") {
        const body = JSON.parse(text || "{}");
        seen.push({ path, authorization, includeUsage: body.stream_options?.include_usage ?? null });
        if (!body.stream) {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(
            JSON.stringify({
              model: "gpt-e2e",
              choices: [{ message: { role: "assistant", content: "Hello" } }],
              usage: { prompt_tokens: 11, completion_tokens: 3 },
            }),
          );
          return;
        }
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        const events = [
          { model: "gpt-e2e", choices: [{ delta: { content: "Hel" } }] },
          { model: "gpt-e2e", choices: [{ delta: { content: "lo" } }] },
          ...(body.stream_options?.include_usage
            ? [{ model: "gpt-e2e", choices: [], usage: { prompt_tokens: 7, completion_tokens: 2 } }]
            : []),
        ];
        let i = 0;
        const next = () => {
          if (i < events.length) {
            res.write(`data: ${JSON.stringify(events[i++])}\n\n`);
            setTimeout(next, CHUNK_GAP_MS);
          } else {
            res.end("data: [DONE]\n\n");
          }
        };
        next();
        return;
      }
      seen.push({ path, authorization, includeUsage: null });
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("hello from the fake");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
