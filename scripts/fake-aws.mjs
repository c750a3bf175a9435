// A local stand-in for the slice of AWS the AgentCore provider uses (S3, bedrock-agentcore-control,
// bedrock-agentcore), for running runtimeProvider "agentcore" on this machine:
//   node scripts/fake-aws.mjs
// It prints the endpoints and the vars to give the gateway (docs/runtimes.md, "Running AgentCore
// locally"). Every request's SigV4 signature is verified with FAKE_AWS_ACCESS_KEY_ID /
// FAKE_AWS_SECRET_ACCESS_KEY (scripts/lib/fake-aws.ts), and invocations run the packaged agent in
// a Node child process. Listens on 127.0.0.1 only; one log line per request, never a value.
import { startFakeAws } from "./lib/fake-aws.ts";

const accessKeyId = process.env.FAKE_AWS_ACCESS_KEY_ID ?? "AKIAFAKELOCAL0000001";
const secretAccessKey = process.env.FAKE_AWS_SECRET_ACCESS_KEY ?? "fake-local-secret-access-key";
const region = process.env.FAKE_AWS_REGION ?? "us-east-1";

const aws = await startFakeAws({
  accessKeyId,
  secretAccessKey,
  region,
  log: (line) => console.log(`[fake-aws] ${new Date().toISOString()} ${line}`),
});
console.log("[fake-aws] ready; give the gateway (e.g. in .dev.vars):");
console.log(`AGENTCORE_REGION=${region}
AGENTCORE_ROLE_ARN=arn:aws:iam::123456789012:role/webhost-agentcore
AGENTCORE_ARTIFACT_BUCKET=webhost-agentcore-local
AWS_ACCESS_KEY_ID=${accessKeyId}
AWS_SECRET_ACCESS_KEY=<FAKE_AWS_SECRET_ACCESS_KEY>
AGENTCORE_CONTROL_ENDPOINT=${aws.controlEndpoint}
AGENTCORE_DATA_ENDPOINT=${aws.dataEndpoint}
AGENTCORE_S3_ENDPOINT=${aws.s3Endpoint}
GATEWAY_PUBLIC_URL=http://127.0.0.1:8787`);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    void aws.stop().then(() => process.exit(0));
  });
}
