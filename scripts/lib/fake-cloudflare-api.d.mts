// Types for fake-cloudflare-api.mjs (imported by the TypeScript tests).
export type FakeScript = {
  metadata: {
    main_module: string;
    compatibility_date?: string;
    compatibility_flags?: string[];
    bindings?: Array<{ type: string; name: string; [field: string]: unknown }>;
    tags?: string[];
    [field: string]: unknown;
  };
  modules: Array<{ name: string; contentType: string; content: string }>;
  tags: string[];
  etag: string;
};

export type FakeRequestRecord = {
  method: string;
  path: string;
  query: string;
  status: number;
  summary?: string;
  error?: string;
};

export type FakeFault = {
  method?: string;
  pathIncludes?: string;
  times?: number;
  status?: number;
  errors?: Array<{ code: number; message: string }>;
  rawBody?: string;
  contentType?: string;
  hang?: boolean;
  networkError?: string;
};

export type FakeCloudflareApi = {
  fetch(request: Request): Promise<Response>;
  scripts: Map<string, FakeScript>;
  requests: FakeRequestRecord[];
  inject(fault: FakeFault): void;
};

export function createFakeCloudflareApi(options: {
  accountId: string;
  apiToken: string;
  namespace: string;
  basePath?: string;
  deletePageSize?: number;
  log?: (line: string) => void;
}): FakeCloudflareApi;
