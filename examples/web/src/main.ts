/**
 * The web sample: sign in with OIDC (authorization code + PKCE), then let
 * `AzureCommunicationTokenCredential` fetch ACS tokens from the token service with the
 * sign-in access token. Everything deployment-specific is in config.json.
 */
import { AzureCommunicationTokenCredential } from "@azure/communication-common";
import { UserManager, WebStorageStateStore, type User } from "oidc-client-ts";

import { describeError, TokenServiceClient, type IssuedToken } from "./api";
import { loadConfig, type WebConfig } from "./config";

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`index.html has no #${id}`);
  return found as T;
}

const ui = {
  signedInAs: byId("signed-in-as"),
  signIn: byId<HTMLButtonElement>("sign-in"),
  signOut: byId<HTMLButtonElement>("sign-out"),
  tokenCard: byId("token-card"),
  acsUserId: byId("acs-user-id"),
  scopes: byId("scopes"),
  expires: byId("expires"),
  serviceCalls: byId("service-calls"),
  getToken: byId<HTMLButtonElement>("get-token"),
  freshToken: byId<HTMLButtonElement>("fresh-token"),
  revoke: byId<HTMLButtonElement>("revoke"),
  deleteAccount: byId<HTMLButtonElement>("delete-account"),
  status: byId("status"),
  apiBase: byId("api-base"),
  authority: byId("authority"),
};

type Kind = "info" | "ok" | "error";

/**
 * One live region for every outcome; `data-code` names the case and `data-seq` counts the
 * announcements, so that a script (or a test) can tell a new outcome from an old one.
 */
function setStatus(kind: Kind, code: string, text: string): void {
  ui.status.dataset.seq = String(Number(ui.status.dataset.seq ?? "0") + 1);
  ui.status.dataset.kind = kind;
  ui.status.dataset.code = code;
  ui.status.textContent = text;
}

/** Errors already shown to the user: a failed background refresh must not also be "unhandled". */
const reported = new WeakSet<object>();

function showError(err: unknown, prefix = ""): void {
  const { kind, text } = describeError(err);
  if (typeof err === "object" && err !== null) reported.add(err);
  setStatus("error", kind, prefix + text);
}

window.addEventListener("unhandledrejection", (event) => {
  if (typeof event.reason === "object" && event.reason !== null && reported.has(event.reason)) {
    event.preventDefault();
  }
});

function formatExpiry(iso: string): string {
  const at = new Date(iso);
  const minutes = Math.round((at.getTime() - Date.now()) / 60000);
  return `${at.toLocaleString()} (in ${minutes} min)`;
}

class App {
  private credential: AzureCommunicationTokenCredential | null = null;
  private issued: IssuedToken | null = null;
  private serviceCalls = 0;
  private readonly api: TokenServiceClient;

  constructor(
    private readonly config: WebConfig,
    private readonly users: UserManager,
  ) {
    this.api = new TokenServiceClient(config.apiBase, async () => {
      const user = await this.users.getUser();
      if (!user) throw new Error("Sign in first.");
      return user.access_token;
    });
  }

  /**
   * The credential calls the service whenever it has no valid token and, with
   * `refreshProactively`, again before the token expires, in the background.
   */
  private newCredential(): AzureCommunicationTokenCredential {
    return new AzureCommunicationTokenCredential({
      refreshProactively: true,
      tokenRefresher: async (abortSignal) => {
        try {
          // The SDK types it as AbortSignalLike; in a browser it is a DOM AbortSignal (or none).
          const issued = await this.api.issueToken(abortSignal as AbortSignal | undefined);
          this.issued = issued;
          this.serviceCalls += 1;
          this.renderToken();
          return issued.token;
        } catch (err) {
          showError(err);
          throw err;
        }
      },
    });
  }

  private dropCredential(): void {
    this.credential?.dispose();
    this.credential = null;
    this.issued = null;
    this.renderToken();
  }

  renderUser(user: User | null): void {
    const signedIn = user !== null && !user.expired;
    ui.signIn.hidden = signedIn;
    ui.signOut.hidden = !signedIn;
    ui.tokenCard.hidden = !signedIn;
    if (signedIn) {
      const name = user.profile.name ?? user.profile.preferred_username ?? user.profile.sub;
      ui.signedInAs.textContent = `Signed in as ${name}.`;
    } else {
      ui.signedInAs.textContent = user?.expired ? "Your sign-in has expired." : "Not signed in.";
    }
  }

  private renderToken(): void {
    const t = this.issued;
    ui.acsUserId.textContent = t ? t.acsUserId : "none yet";
    ui.scopes.textContent = t ? t.scopes.join(", ") : "none yet";
    ui.expires.textContent = t ? formatExpiry(t.expiresOn) : "none yet";
    ui.serviceCalls.textContent = String(this.serviceCalls);
  }

  /** Run one user action with every button disabled, so clicks cannot overlap. */
  private async busy(action: () => Promise<void>): Promise<void> {
    const buttons = [ui.getToken, ui.freshToken, ui.revoke, ui.deleteAccount, ui.signOut];
    buttons.forEach((b) => (b.disabled = true));
    ui.tokenCard.setAttribute("aria-busy", "true");
    try {
      await action();
    } catch (err) {
      showError(err);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      ui.tokenCard.removeAttribute("aria-busy");
    }
  }

  /** A token from the credential: its cached one while valid, else a new one from the service. */
  getToken(): Promise<void> {
    return this.busy(async () => {
      const before = this.serviceCalls;
      this.credential ??= this.newCredential();
      await this.credential.getToken();
      const fresh = this.serviceCalls > before;
      setStatus("ok", fresh ? "token" : "cached",
        fresh ? "Got an ACS token from the service." : "The credential's cached token is still valid.");
    });
  }

  /** Force the service to be called again: a new credential has no token yet. */
  freshToken(): Promise<void> {
    return this.busy(async () => {
      this.dropCredential();
      this.credential = this.newCredential();
      await this.credential.getToken();
      setStatus("ok", "refreshed", "Got a fresh ACS token from the service.");
    });
  }

  revoke(): Promise<void> {
    return this.busy(async () => {
      await this.api.revoke();
      this.dropCredential();
      setStatus("ok", "revoked", "Every ACS token issued to you so far has been revoked. " +
        "Get a fresh token to continue.");
    });
  }

  deleteAccount(): Promise<void> {
    if (!window.confirm("Delete your account? Your ACS tokens stop working at once.")) {
      return Promise.resolve();
    }
    return this.busy(async () => {
      await this.api.deleteAccount();
      this.dropCredential();
      setStatus("ok", "deleted", "Your account is deleted and its tokens are revoked.");
    });
  }

  async signIn(): Promise<void> {
    setStatus("info", "redirecting", "Redirecting to sign in…");
    try {
      await this.users.signinRedirect();
    } catch (err) {
      showError(err, `Could not start sign-in at ${this.config.authority}: `);
    }
  }

  async signOut(): Promise<void> {
    this.dropCredential();
    await this.users.removeUser();
    this.renderUser(null);
    setStatus("info", "signed-out", "Signed out of this page.");
  }
}

/** True when this load is the identity provider sending the user back. */
function isSignInCallback(): boolean {
  const params = new URLSearchParams(window.location.search);
  return params.has("state") && (params.has("code") || params.has("error"));
}

async function start(): Promise<void> {
  let config: WebConfig;
  try {
    config = await loadConfig();
  } catch (err) {
    ui.signedInAs.textContent = "Not configured.";
    showError(err);
    return;
  }
  ui.apiBase.textContent = config.apiBase;
  ui.authority.textContent = config.authority;
  const users = new UserManager({
    authority: config.authority,
    client_id: config.clientId,
    redirect_uri: config.redirectUri,
    response_type: "code",
    scope: `openid profile ${config.apiScope}`,
    automaticSilentRenew: false,
    loadUserInfo: false,
    userStore: new WebStorageStateStore({ store: window.sessionStorage }),
  });
  const app = new App(config, users);
  ui.signIn.addEventListener("click", () => void app.signIn());
  ui.signOut.addEventListener("click", () => void app.signOut());
  ui.getToken.addEventListener("click", () => void app.getToken());
  ui.freshToken.addEventListener("click", () => void app.freshToken());
  ui.revoke.addEventListener("click", () => void app.revoke());
  ui.deleteAccount.addEventListener("click", () => void app.deleteAccount());

  if (isSignInCallback()) {
    try {
      await users.signinRedirectCallback();
      setStatus("ok", "signed-in", "Signed in. Get a token to start.");
    } catch (err) {
      showError(err, "Sign-in failed: ");
    }
    window.history.replaceState(null, "", window.location.pathname);
  }
  const user = await users.getUser();
  app.renderUser(user);
  document.body.dataset.ready = "true";
}

void start();
