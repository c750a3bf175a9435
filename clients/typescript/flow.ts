// The whole flow through the typed client: create an agent, deploy the template, wait for it,
// invoke it (JSON and stream), and read a problem by its typed code. `tsc --strict` checks it
// against the generated types (npm test); tests/e2e/typed-client.e2e.test.ts runs it against the
// dev server.
import { type ApiClient, type InvokeStreamEvent, invokeStreamEvents, type ProblemCode, type Schemas } from "./index";

export type FlowResult = {
  agent: Schemas["Agent"];
  deployment: Schemas["Deployment"];
  answer: Schemas["InvokeResponse"];
  deploymentIdHeader: string | null;
  replayed: string | null;
  streamed: InvokeStreamEvent[];
  missingAgent: { status: number; code: ProblemCode; requestId: string };
};

export async function agentFlow(api: ApiClient, name: string): Promise<FlowResult> {
  const created = await api.POST("/v1/agents", {
    params: { header: { "Idempotency-Key": `create-${name}` } },
    body: { name, description: "made by the typed client" },
  });
  if (!created.data) throw new Error(`createAgent: ${created.error?.code}`);
  const agent = created.data.agent;
  // The same key and body again: the stored answer, marked as a replay.
  const again = await api.POST("/v1/agents", {
    params: { header: { "Idempotency-Key": `create-${name}` } },
    body: { name, description: "made by the typed client" },
  });
  const replayed = again.response.headers.get("Idempotent-Replayed");

  const deployed = await api.POST("/v1/agents/{agentId}/deploy", { params: { path: { agentId: agent.id } }, body: {} });
  if (!deployed.data) throw new Error(`deployAgent: ${deployed.error?.code}`);
  let deployment = deployed.data.deployment;
  for (let i = 0; deployment.status === "deploying"; i++) {
    if (i > 200) throw new Error("the deployment is still deploying");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const polled = await api.GET("/v1/agents/{agentId}/deployments/{deploymentId}", {
      params: { path: { agentId: agent.id, deploymentId: deployment.id } },
    });
    if (!polled.data) throw new Error(`getDeployment: ${polled.error?.code}`);
    deployment = polled.data.deployment;
  }

  const invoked = await api.POST("/v1/invoke/{agentId}", {
    params: { path: { agentId: agent.id } },
    body: { messages: [{ role: "user", content: "hello typed world" }] },
  });
  if (!invoked.data) throw new Error(`invokeAgent: ${invoked.error?.code}`);

  const stream = await api.POST("/v1/invoke/{agentId}/stream", {
    params: { path: { agentId: agent.id } },
    body: { messages: [{ role: "user", content: "one two three" }] },
    parseAs: "stream",
  });
  // openapi-fetch does not narrow `data` by parseAs when it infers the call's options; with
  // parseAs "stream" the body is left unread, so the response's own body is the event stream.
  if (stream.error || !stream.response.body) throw new Error(`invokeAgentStream: ${stream.error?.code}`);
  const streamed: InvokeStreamEvent[] = [];
  for await (const event of invokeStreamEvents(stream.response.body)) {
    streamed.push(event);
    // Narrowed by `event`: a delta has text, done the whole answer, error a code.
    if (event.event === "done") event.data.output.text satisfies string;
    if (event.event === "error") event.data.code satisfies string;
  }

  const missing = await api.GET("/v1/agents/{agentId}", { params: { path: { agentId: "agt_missing" } } });
  if (!missing.error) throw new Error("getAgent of an unknown id succeeded");
  return {
    agent,
    deployment,
    answer: invoked.data,
    deploymentIdHeader: invoked.response.headers.get("x-deployment-id"),
    replayed,
    streamed,
    missingAgent: { status: missing.response.status, code: missing.error.code, requestId: missing.error.requestId },
  };
}
