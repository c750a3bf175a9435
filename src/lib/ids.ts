// Prefixed, time-sortable ids: `<prefix>_` + 10 chars of millisecond time + 16 random chars,
// Crockford base32 (ULID layout), so ids sort by creation time as plain strings.
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

export const ID_PREFIXES = {
  user: "usr",
  agent: "agt",
  deployment: "dep",
  artifact: "art",
  event: "evt",
  request: "req",
  usage: "use",
  subscription: "sub",
  audit: "aud",
  secret: "sec",
  apiKey: "key",
  run: "run",
  session: "ses",
  webhook: "whe",
  webhookMessage: "msg",
  rollout: "rol",
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

export function newId(kind: IdKind, now = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let random = "";
  for (const b of bytes) random += ALPHABET[b % 32];
  return `${ID_PREFIXES[kind]}_${time}${random}`;
}

const ID_PATTERN = /^[a-z]{3}_[0-9a-z]{26}$/;

/** Shape check used by path parameters; an id of the wrong shape is simply "not found". */
export function isIdOf(kind: IdKind, value: string): boolean {
  return value.startsWith(`${ID_PREFIXES[kind]}_`) && ID_PATTERN.test(value);
}
