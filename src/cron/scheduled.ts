// The cron handler (wrangler.toml [triggers]): periodic maintenance. Each task logs one line and
// a failing task does not stop the others.
import { createDb } from "../db/client";
import type { Env } from "../env";
import { describeError, logError, logInfo } from "../lib/logger";
import { sweepStuckDeployments } from "../services/deployments/deploy-job";

type Task = { name: string; run: (env: Env, scheduledTime: number) => Promise<Record<string, number | string>> };

const TASKS: Task[] = [
  {
    name: "sweep_stuck_deployments",
    run: async (env, scheduledTime) => {
      const failed = await sweepStuckDeployments(createDb(env.DB), Math.max(scheduledTime, Date.now()));
      return { failed: failed.length };
    },
  },
];

export async function handleScheduled(controller: ScheduledController, env: Env, _ctx: ExecutionContext) {
  for (const task of TASKS) {
    try {
      logInfo("cron_task", {
        task: task.name,
        cron: controller.cron,
        ...(await task.run(env, controller.scheduledTime)),
      });
    } catch (err) {
      logError("cron_task_failed", { task: task.name, error: describeError(err) });
    }
  }
}
