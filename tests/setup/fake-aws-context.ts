// What tests/setup/fake-aws-global.ts (Node) hands the Workers-runtime tests: the fake AWS's
// endpoints and the credentials it verifies signatures with. Read it with `inject("fakeAws")`.
export type FakeAwsContext = {
  s3Endpoint: string;
  controlEndpoint: string;
  dataEndpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
};

declare module "vitest" {
  export interface ProvidedContext {
    fakeAws: FakeAwsContext;
  }
}
