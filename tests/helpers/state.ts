// A tenant's rows as the API could change them, for "changed nothing" checks: compare a snapshot
// taken before a hostile request with one taken after.
import { env } from "cloudflare:workers";

export async function tenantState(userId: string) {
  const rows = async (sql: string) => (await env.DB.prepare(sql).bind(userId).all()).results;
  return {
    agents: await rows("SELECT * FROM agents WHERE user_id = ? ORDER BY id"),
    deployments: await rows(
      "SELECT id, status, claimed_at, activated_at, error_message, updated_at FROM deployments WHERE user_id = ? ORDER BY id",
    ),
    artifacts: await rows("SELECT id, sha256 FROM deployment_artifacts WHERE user_id = ? ORDER BY id"),
    secrets: await rows("SELECT name, ciphertext, updated_at FROM agent_secrets WHERE user_id = ? ORDER BY name"),
    rollouts: await rows(
      "SELECT id, status, stage_index, stage_started_at, end_reason, updated_at FROM rollouts WHERE user_id = ? ORDER BY id",
    ),
    audit: await rows("SELECT id FROM audit_log WHERE user_id = ? ORDER BY id"),
    // Not last_used_at: using a key (a read) updates it.
    apiKeys: await rows(
      "SELECT id, name, scopes, agent_ids, expires_at, revoked_at FROM api_keys WHERE user_id = ? ORDER BY id",
    ),
    // Not failing_since / updated_at: the delivery consumer changes them on its own schedule.
    webhooks: await rows(
      "SELECT id, url, events, status, secret_ciphertext, previous_secret_ciphertext FROM webhook_endpoints WHERE user_id = ? ORDER BY id",
    ),
    webhookDeliveries: await rows(
      "SELECT id, endpoint_id, event_type FROM webhook_deliveries WHERE user_id = ? ORDER BY id",
    ),
    gatewayEvents: await rows("SELECT id FROM metrics_events WHERE user_id = ? AND source = 'gateway' ORDER BY id"),
  };
}
