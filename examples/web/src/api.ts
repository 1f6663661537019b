/**
 * The token service's HTTP API as the page uses it, and what each failure means to a user.
 */

/** `POST /api/token` answer. */
export interface IssuedToken {
  acsUserId: string;
  token: string;
  expiresOn: string;
  scopes: string[];
}

/** A non-2xx answer from the service. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    /** Seconds to wait: the body's `error.retryAfterSeconds`, else a readable `Retry-After`
     * header; null when neither is there. */
    readonly retryAfter: number | null,
    /** Whether the `Retry-After` header was visible to this page at all. */
    readonly retryAfterVisible: boolean,
  ) {
    super(`HTTP ${status} ${code}: ${detail}`);
    this.name = "ApiError";
  }
}

/** The request never got a readable answer: network down, or CORS refused this origin. */
export class NetworkError extends Error {
  constructor(readonly url: string) {
    super(`No readable answer from ${url}`);
    this.name = "NetworkError";
  }
}

/** `Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 section 10.2.3). */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === "") return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

/** `error.retryAfterSeconds` of an error body: a positive whole number of seconds, else null. */
export function bodyRetryAfter(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value > 0 ? value : null;
}

/** Read an answer's body we do not need, so the browser can finish (and reuse) the request. */
async function drain(resp: Response): Promise<void> {
  await resp.arrayBuffer();
}

export class TokenServiceClient {
  constructor(
    private readonly apiBase: string,
    private readonly accessToken: () => Promise<string>,
  ) {}

  issueToken(signal?: AbortSignal): Promise<IssuedToken> {
    return this.send("POST", "/token", signal).then((resp) => resp.json() as Promise<IssuedToken>);
  }

  async revoke(): Promise<void> {
    await drain(await this.send("POST", "/me/revoke"));
  }

  async deleteAccount(): Promise<void> {
    await drain(await this.send("DELETE", "/me"));
  }

  private async send(method: string, path: string, signal?: AbortSignal): Promise<Response> {
    const url = this.apiBase + path;
    const headers: Record<string, string> = {
      Authorization: `Bearer ${await this.accessToken()}`,
    };
    let resp: Response;
    try {
      resp = await fetch(url, { method, headers, signal, cache: "no-store" });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new NetworkError(url);
    }
    if (resp.ok) return resp;
    let code = "unknown";
    let detail = resp.statusText;
    let waitFromBody: number | null = null;
    try {
      const body = (await resp.json()) as {
        error?: { code?: unknown; message?: unknown; retryAfterSeconds?: unknown };
      };
      if (typeof body.error?.code === "string") code = body.error.code;
      if (typeof body.error?.message === "string") detail = body.error.message;
      waitFromBody = bodyRetryAfter(body.error?.retryAfterSeconds);
    } catch {
      // Not JSON (a proxy or the platform answered): status and status text say enough.
    }
    // The body carries the wait because Azure's CORS hides Retry-After from other origins;
    // the header still counts when this page can read it (same origin, or a proxy's answer).
    const header = resp.headers.get("Retry-After");
    const wait = waitFromBody ?? parseRetryAfter(header);
    throw new ApiError(resp.status, code, detail, wait, header !== null);
  }
}

function waitText(err: ApiError): string {
  if (err.retryAfter !== null) {
    return `Try again in ${err.retryAfter} second${err.retryAfter === 1 ? "" : "s"}.`;
  }
  if (!err.retryAfterVisible) {
    return "This answer did not say when to retry (no retryAfterSeconds in its body, and " +
      "this page cannot read a Retry-After header from another origin). Try again in a minute.";
  }
  return "Try again in a minute.";
}

/** What to tell the user about a failure; `kind` names the case for styling and tests. */
export function describeError(err: unknown): { kind: string; text: string } {
  if (err instanceof ApiError) {
    switch (err.status) {
      case 401:
        return {
          kind: "unauthorized",
          text: "401: the service did not accept your sign-in (missing, expired or for " +
            "another API). Sign in again.",
        };
      case 403:
        return { kind: "forbidden", text: `403: not allowed. ${err.detail}` };
      case 410:
        return {
          kind: "gone",
          text: "410: this account has been deleted. Its ACS identity and tokens no longer " +
            "work; an administrator can restore it during the grace period.",
        };
      case 429:
        return {
          kind: "throttled",
          text: `429: Azure Communication Services is throttling requests. ${waitText(err)}`,
        };
      case 503:
        return {
          kind: "unavailable",
          text: `503: the service is unavailable right now. ${waitText(err)}`,
        };
      default:
        return { kind: `http-${err.status}`, text: `${err.status}: ${err.detail}` };
    }
  }
  if (err instanceof NetworkError) {
    return {
      kind: "network",
      text: `No readable answer from ${err.url}: the service is down, or it does not allow ` +
        `this page's origin (${window.location.origin}) in its CORS settings.`,
    };
  }
  return { kind: "error", text: err instanceof Error ? err.message : String(err) };
}
