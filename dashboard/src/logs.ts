// Live logs: GET /v1/agents/:agentId/logs for the recent lines, then ?follow=1, a server-sent
// event stream read with fetch (EventSource cannot send an Authorization header). `event: log`
// carries a line, `event: sampled` how many lines the gateway dropped under load; anything else
// (heartbeats, comments) is ignored. A dropped stream reconnects with Last-Event-ID, so no line
// is shown twice or skipped; the follow never stops on its own.
import { ApiProblem, api, authHeaders, type LogLine } from "./api";

export type LogEvents = {
  line(line: LogLine): void;
  sampled(dropped: number): void;
  state(state: "connecting" | "following" | "reconnecting" | "unavailable", detail?: string): void;
};

type SseEvent = { id?: string; event: string; data: string };

/** Splits a byte stream into SSE events (the text/event-stream format: blocks separated by a blank line). */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let carriageReturn = "";
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    let text = carriageReturn + decoder.decode(value, { stream: true });
    // A "\r\n" split between two chunks must stay one line break.
    carriageReturn = text.endsWith("\r") ? "\r" : "";
    if (carriageReturn) text = text.slice(0, -1);
    buffer += text.replace(/\r\n?/g, "\n");
    for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event: SseEvent = { event: "message", data: "" };
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const text = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") data.push(text);
        else if (field === "event") event.event = text;
        else if (field === "id") event.id = text;
      }
      if (data.length === 0 && event.id === undefined) continue;
      event.data = data.join("\n");
      yield event;
    }
  }
}

export function followLogs(agentId: string, on: LogEvents, signal: AbortSignal): void {
  const seen = new Set<string>();
  let lastEventId: string | undefined;
  const emit = (line: LogLine) => {
    const key = String(line.id);
    if (seen.has(key)) return;
    seen.add(key);
    if (seen.size > 5000) seen.delete(seen.values().next().value as string);
    on.line(line);
  };

  const run = async () => {
    on.state("connecting");
    try {
      const recent = await api<{ logs: LogLine[] }>(
        "GET",
        `/v1/agents/${encodeURIComponent(agentId)}/logs?limit=100`,
        undefined,
        signal,
      );
      // The page is newest first; shown oldest first, and the follow resumes after the newest, so
      // a line printed between the two requests is neither lost nor shown twice.
      for (const line of [...recent.logs].sort((a, b) => Number(a.id) - Number(b.id))) emit(line);
      const newest = recent.logs.reduce((max, line) => Math.max(max, Number(line.id)), 0);
      if (newest > 0 && lastEventId === undefined) lastEventId = String(newest);
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiProblem && err.status === 404 && err.code === "route_not_found") {
        on.state("unavailable", "this gateway does not serve logs yet");
        return;
      }
      // The follow below reports its own failure; the recent lines are a nicety.
    }
    let delay = 1000;
    while (!signal.aborted) {
      try {
        const headers: Record<string, string> = { accept: "text/event-stream", ...authHeaders() };
        if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
        const res = await fetch(`/v1/agents/${encodeURIComponent(agentId)}/logs?follow=1`, {
          headers,
          signal,
          credentials: "omit",
          cache: "no-store",
        });
        if (res.status === 404 || res.status === 401 || res.status === 403) {
          const problem = (await res.json().catch(() => ({}))) as { code?: string; detail?: string };
          on.state(
            "unavailable",
            problem.code === "route_not_found"
              ? "this gateway does not serve logs yet"
              : (problem.detail ?? `answered ${res.status}`),
          );
          return;
        }
        if (!res.ok || !res.body) throw new Error(`answered ${res.status}`);
        on.state("following");
        delay = 1000;
        for await (const event of readSse(res.body)) {
          if (event.id !== undefined) lastEventId = event.id;
          if (event.event === "log") emit(JSON.parse(event.data) as LogLine);
          else if (event.event === "sampled") on.sampled((JSON.parse(event.data) as { dropped: number }).dropped);
        }
      } catch (err) {
        if (signal.aborted) return;
        on.state("reconnecting", err instanceof Error ? err.message : String(err));
      }
      if (signal.aborted) return;
      on.state("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15_000);
    }
  };
  void run();
}
