/**
 * Runtime configuration, read from `config.json` beside the bundle, so that one build runs
 * against the local stack (which writes it) and against Entra ID (you write it) unchanged.
 */
export interface WebConfig {
  /** OIDC authority: the local issuer, or `https://login.microsoftonline.com/<tenant>/v2.0`. */
  authority: string;
  /** The SPA's client id (Entra ID: the app registration's Application (client) ID). */
  clientId: string;
  /** Where the identity provider sends the user back: this page's URL, registered as a SPA redirect URI. */
  redirectUri: string;
  /** The token service's delegated scope, e.g. `api://<api app id>/access_as_user`. */
  apiScope: string;
  /** The token service's route prefix, e.g. `https://<app>.azurewebsites.net/api`. */
  apiBase: string;
}

const KEYS: (keyof WebConfig)[] = ["authority", "clientId", "redirectUri", "apiScope", "apiBase"];

export class ConfigError extends Error {}

export async function loadConfig(url = "config.json"): Promise<WebConfig> {
  let resp: Response;
  try {
    resp = await fetch(url, { cache: "no-store" });
  } catch {
    throw new ConfigError(`Could not load ${url}.`);
  }
  if (!resp.ok) {
    throw new ConfigError(`Could not load ${url} (HTTP ${resp.status}); see examples/web/README.md.`);
  }
  let data: unknown;
  try {
    data = await resp.json();
  } catch {
    throw new ConfigError(`${url} is not valid JSON.`);
  }
  if (typeof data !== "object" || data === null) {
    throw new ConfigError(`${url} must hold a JSON object.`);
  }
  const raw = data as Record<string, unknown>;
  for (const key of KEYS) {
    if (typeof raw[key] !== "string" || raw[key] === "") {
      throw new ConfigError(`${url}: "${key}" must be a non-empty string.`);
    }
  }
  const config = raw as unknown as WebConfig;
  return { ...config, apiBase: config.apiBase.replace(/\/+$/, "") };
}
