// Additional authenticated data for every kind of stored secret: it names the row a ciphertext
// belongs to, so a ciphertext moved to another row (or another purpose) does not decrypt.

export const telemetrySecretAad = (deploymentId: string) => `deployment:${deploymentId}:telemetry-secret`;
export const secretsSnapshotAad = (deploymentId: string) => `deployment:${deploymentId}:secrets-snapshot`;
export const agentSecretAad = (agentId: string, name: string) => `agent:${agentId}:secret:${name}`;
export const webhookSecretAad = (endpointId: string) => `webhook:${endpointId}:signing-secret`;
