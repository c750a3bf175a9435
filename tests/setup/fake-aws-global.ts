// Runs in Node before the Workers-runtime tests: starts the fake AWS (scripts/lib/fake-aws.ts,
// which runs AgentCore agents in Node child processes, something workerd cannot do) and hands its
// endpoints and credentials to the tests through `inject("fakeAws")`. Used by the runtime
// provider contract suite (tests/runtime-contract.test.ts). Typechecked with the Node code
// (tests/e2e/tsconfig.json), since it starts Node servers.
import type { TestProject } from "vitest/node";
import { startFakeAws } from "../../scripts/lib/fake-aws.ts";
import "./fake-aws-context.ts";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const accessKeyId = "AKIAFAKECONTRACT0001";
  const secretAccessKey = `contract-${crypto.randomUUID()}`;
  const aws = await startFakeAws({ accessKeyId, secretAccessKey, region: "eu-central-1", readyAfterPolls: 1 });
  project.provide("fakeAws", {
    s3Endpoint: aws.s3Endpoint,
    controlEndpoint: aws.controlEndpoint,
    dataEndpoint: aws.dataEndpoint,
    region: aws.region,
    accessKeyId,
    secretAccessKey,
  });
  return () => aws.stop();
}
