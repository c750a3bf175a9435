// Workers for Platforms: the scripts of one dispatch namespace. Upload (multipart PUT), delete one
// script, delete every script carrying a tag.
import type { CloudflareClient } from "./client";
import { isNotFound } from "./errors";
import type { BulkDeleteResult, UploadScriptResult, WorkerModulePart, WorkerUploadMetadata } from "./types";

export class DispatchNamespaceScripts {
  constructor(
    private readonly client: CloudflareClient,
    readonly namespace: string,
  ) {}

  #scriptsPath(scriptName?: string): string {
    const base = `/workers/dispatch/namespaces/${encodeURIComponent(this.namespace)}/scripts`;
    return this.client.accountPath(scriptName === undefined ? base : `${base}/${encodeURIComponent(scriptName)}`);
  }

  /**
   * PUT the script: a `metadata` JSON part plus one part per module, each named by its module
   * name (the name `main_module` refers to). A 200 means the script is dispatchable.
   */
  async upload(
    scriptName: string,
    metadata: WorkerUploadMetadata,
    modules: WorkerModulePart[],
  ): Promise<UploadScriptResult> {
    const form = new FormData();
    form.set("metadata", new Blob([JSON.stringify(metadata)], { type: "application/json" }), "metadata.json");
    for (const m of modules) form.append(m.name, new Blob([m.content], { type: m.contentType }), m.name);
    const result = await this.client.request({
      operation: `upload script ${scriptName}`,
      method: "PUT",
      path: this.#scriptsPath(scriptName),
      body: form,
    });
    return (result ?? {}) as UploadScriptResult;
  }

  /** Deletes one script. Returns false when it did not exist (already removed). */
  async delete(scriptName: string): Promise<boolean> {
    try {
      await this.client.request({
        operation: `delete script ${scriptName}`,
        method: "DELETE",
        path: this.#scriptsPath(scriptName),
      });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Deletes the scripts carrying `tag` (filter `tag:yes`). Cloudflare may delete them in pages
   * (`has_more`); this repeats the call until none are left, at most `maxRounds` times.
   */
  async deleteByTag(tag: string, opts: { maxRounds?: number } = {}): Promise<{ deleted: number; hasMore: boolean }> {
    const maxRounds = opts.maxRounds ?? 20;
    let deleted = 0;
    for (let round = 0; round < maxRounds; round++) {
      const result = ((await this.client.request({
        operation: `delete scripts tagged ${tag}`,
        method: "DELETE",
        path: this.#scriptsPath(),
        query: { tags: `${tag}:yes` },
      })) ?? {}) as BulkDeleteResult;
      const count = result.deleted_count ?? result.deleted?.length ?? 0;
      deleted += count;
      if (!result.has_more || count === 0) return { deleted, hasMore: false };
    }
    return { deleted, hasMore: true };
  }
}
