// Messages on the deploy-jobs queue. A plain `{ deploymentId }` is a deploy (the original body,
// still accepted as is); every other job kind carries a `type`.
import { z } from "zod";

export const DeployJobSchema = z.strictObject({ deploymentId: z.string().min(1).max(64) });

export type DeployJob = z.infer<typeof DeployJobSchema>;

/** Delete every runtime script of an agent (sent when the agent is deleted); retried on failure. */
export const CleanupAgentScriptsJobSchema = z.strictObject({
  type: z.literal("cleanup_agent_scripts"),
  userId: z.string().min(1).max(64),
  agentId: z.string().min(1).max(64),
});

export type CleanupAgentScriptsJob = z.infer<typeof CleanupAgentScriptsJobSchema>;

/** Job kinds that carry `type`, told apart by it. */
export const TypedJobSchema = z.discriminatedUnion("type", [CleanupAgentScriptsJobSchema]);

export type TypedJob = z.infer<typeof TypedJobSchema>;

/** Anything the queue carries: a plain deploy body or a typed job. */
export const QueueJobSchema = z.union([DeployJobSchema, TypedJobSchema]);

export type QueueJob = z.infer<typeof QueueJobSchema>;

export function isDeployJob(job: QueueJob): job is DeployJob {
  return !("type" in job);
}
