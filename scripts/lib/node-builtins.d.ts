// The slice of Node's API that scripts/lib uses, declared by hand: the project has no Node type
// package (the Workers-runtime code must not see Node globals), and only the Node-side tsconfig
// (tests/e2e/tsconfig.json) includes this file. Adding @types/node would replace it; until then,
// a Node API used in scripts/lib is declared here first.

interface NodeReadable {
  on(event: "data", listener: (chunk: Uint8Array) => void): this;
  unref?(): void;
}

interface NodeWritable {
  readonly destroyed: boolean;
  write(text: string): boolean;
  end(text?: string): void;
  on(event: "error", listener: (error: Error) => void): this;
  unref?(): void;
}

declare var process: {
  readonly env: Record<string, string | undefined>;
  readonly argv: string[];
  readonly execPath: string;
  readonly pid: number;
  readonly version: string;
  exitCode: number | undefined;
  readonly stdout: { write(text: string): boolean; readonly isTTY?: boolean };
  readonly stderr: { write(text: string): boolean };
  exit(code?: number): never;
  kill(pid: number, signal?: string | number): true;
  on(event: string, listener: (...args: any[]) => void): unknown;
  once(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
  listenerCount(event: string): number;
};

declare module "node:child_process" {
  export type SpawnOptions = {
    cwd?: string;
    env?: Record<string, string | undefined>;
    detached?: boolean;
    stdio?: "inherit" | "ignore" | "pipe" | Array<"inherit" | "ignore" | "pipe">;
  };
  export interface ChildProcess {
    readonly pid: number | undefined;
    readonly exitCode: number | null;
    readonly stdin: NodeWritable | null;
    readonly stdout: NodeReadable | null;
    readonly stderr: NodeReadable | null;
    once(event: "exit", listener: (code: number | null, signal: string | null) => void): this;
    once(event: "error", listener: (error: Error) => void): this;
    once(event: "close", listener: (code: number | null, signal: string | null) => void): this;
    on(event: "exit", listener: (code: number | null, signal: string | null) => void): this;
    kill(signal?: string): boolean;
    unref(): void;
  }
  export function spawn(command: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
}

declare module "node:fs" {
  export function existsSync(path: string | URL): boolean;
  export function mkdtempSync(prefix: string): string;
  export function mkdirSync(path: string, options?: { recursive?: boolean }): void;
  export function rmSync(path: string, options?: { recursive?: boolean; force?: boolean }): void;
  export function readdirSync(path: string): string[];
  export function readFileSync(path: string | URL, encoding: "utf8"): string;
  export function writeFileSync(path: string | URL, text: string, options?: { mode?: number; flag?: string }): void;
  export function appendFileSync(path: string, text: string): void;
}

declare module "node:os" {
  export function tmpdir(): string;
}

declare module "node:path" {
  export const delimiter: string;
  export function join(...parts: string[]): string;
  export function resolve(...parts: string[]): string;
  export function dirname(path: string): string;
}

declare module "node:url" {
  export function fileURLToPath(url: string | URL): string;
}

declare module "node:crypto" {
  export function randomBytes(size: number): { toString(encoding: "base64" | "hex"): string };
  export interface Hmac {
    update(data: string | Uint8Array): Hmac;
    digest(encoding: "base64" | "hex"): string;
  }
  export function createHmac(algorithm: "sha256", key: Uint8Array): Hmac;
}

declare module "node:net" {
  export interface Server {
    unref(): this;
    once(event: "error", listener: (error: Error) => void): this;
    listen(options: { port: number; host: string; exclusive?: boolean }, listener: () => void): this;
    address(): { port: number } | string | null;
    close(listener?: () => void): this;
  }
  export function createServer(): Server;
}

declare module "node:http" {
  export interface IncomingMessage {
    readonly url?: string;
    readonly method?: string;
    readonly headers: Record<string, string | undefined>;
    on(event: "data", listener: (chunk: Uint8Array) => void): this;
    on(event: "end", listener: () => void): this;
  }
  export interface ServerResponse {
    writeHead(status: number, headers?: Record<string, string>): this;
    write(text: string): boolean;
    end(text?: string): this;
  }
  export interface Server {
    listen(port: number, host: string, listener: () => void): this;
    address(): { port: number } | string | null;
    close(listener?: () => void): this;
  }
  export function createServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Server;
}

declare module "node:sqlite" {
  export class StatementSync {
    run(...params: unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
    get(...params: unknown[]): unknown;
    all(...params: unknown[]): unknown[];
  }
  export class DatabaseSync {
    constructor(path: string);
    exec(sql: string): void;
    prepare(sql: string): StatementSync;
    close(): void;
  }
}

// Used by the fake AWS (fake-aws.ts): files written from bytes, and a streamed HTTP answer.
declare module "node:fs" {
  export function writeFileSync(path: string | URL, data: Uint8Array): void;
}

declare module "node:http" {
  export interface IncomingMessage {
    on(event: "close", listener: () => void): this;
  }
  export interface ServerResponse {
    readonly headersSent: boolean;
    write(chunk: Uint8Array): boolean;
    end(chunk?: Uint8Array): this;
    on(event: "close", listener: () => void): this;
    flushHeaders?(): void;
  }
}
