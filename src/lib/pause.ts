// A pause between the bounded steps of a long maintenance task (the cron's reconciliation,
// retention, purges), so the requests that arrived meanwhile run between two steps instead of
// after the whole task.
//
// Why a timer and not just `await`: under `wrangler dev` the gateway and the local D1 run in one
// workerd process on one event loop, and a chain of D1 round trips never leaves that loop idle;
// the loop reads new connections only when idle, so a 5-second task with no pause kept every
// other request (even /healthz, which reads nothing) waiting 5 seconds (`npm run bench:scale`,
// B8). A timer leaves the loop idle for a moment. On Cloudflare, D1 runs its statements one at a
// time per database, so the pause also lets the API's queries in between two of ours.
export const STEP_PAUSE_MS = 2;

export function pauseBetweenSteps(ms: number = STEP_PAUSE_MS): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
