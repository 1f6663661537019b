// Get Azure Communication Services tokens from the token service, the way a web or Node app
// does it: the official AzureCommunicationTokenCredential (@azure/communication-common) calls
// our tokenRefresher whenever it has no token or the token is about to expire; the refresher
// calls POST /api/token with the signed-in user's bearer token.
//
//   API_BASE=http://127.0.0.1:7071/api BEARER_TOKEN=eyJ... node examples/node/client.mjs
//   node examples/node/client.mjs --api-base URL --bearer-token TOKEN [--scopes chat,voip]
//   (API and TOKEN, the names `make run` prints, work too)
//
// The local stack's API is plain http on loopback, so no NODE_EXTRA_CA_CERTS is needed.
// Output: "ACS user id: ...", "Token expires: ...", "Refreshes: N", then one JSON line.

import { AzureCommunicationTokenCredential } from "@azure/communication-common";

function parseArgs(argv) {
  const opts = {
    apiBase: process.env.API_BASE || process.env.API,
    bearerToken: process.env.BEARER_TOKEN || process.env.TOKEN,
    scopes: "",
    minutes: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case "--api-base": opts.apiBase = value; i++; break;
      case "--bearer-token": opts.bearerToken = value; i++; break;
      case "--scopes": opts.scopes = value; i++; break;
      case "--minutes": opts.minutes = Number(value); i++; break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!opts.apiBase || !opts.bearerToken) {
    throw new Error("give --api-base and --bearer-token (or set API_BASE and BEARER_TOKEN)");
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const url = opts.apiBase.replace(/\/+$/, "") + "/token";
  const body = {};
  const scopes = opts.scopes.split(",").map((s) => s.trim()).filter(Boolean);
  if (scopes.length) body.scopes = scopes;
  if (opts.minutes) body.expiresInMinutes = opts.minutes;

  let refreshes = 0;
  let acsUserId;
  const credential = new AzureCommunicationTokenCredential({
    refreshProactively: true,
    tokenRefresher: async (abortSignal) => {
      refreshes++;
      const response = await fetch(url, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${opts.bearerToken}`,
          "Content-Type": "application/json",
        },
        body: JSON.stringify(body),
        signal: abortSignal,
      });
      if (!response.ok) {
        throw new Error(`POST ${url} failed: ${response.status} ${await response.text()}`);
      }
      const reply = await response.json();
      acsUserId = reply.acsUserId;
      return reply.token;
    },
  });
  try {
    let token = await credential.getToken(); // what the chat/calling clients call
    token = await credential.getToken(); // cached: no second call to the service
    const expiresOn = new Date(token.expiresOnTimestamp).toISOString();
    console.log(`ACS user id: ${acsUserId}`);
    console.log(`Token expires: ${expiresOn}`);
    console.log(`Refreshes: ${refreshes}`);
    console.log(JSON.stringify({ acsUserId, expiresOn, refreshes, token: token.token }));
  } finally {
    credential.dispose();
  }
}

main().catch((err) => {
  console.error(err.message ?? err);
  process.exit(1);
});
