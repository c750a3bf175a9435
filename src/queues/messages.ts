// Messages on the deploy-jobs queue. `{ deploymentId }` is a deploy; later job kinds carry `type`.
import { z } from "zod";

export const DeployJobSchema = z.strictObject({ deploymentId: z.string().min(1).max(64) });

export type DeployJob = z.infer<typeof DeployJobSchema>;
