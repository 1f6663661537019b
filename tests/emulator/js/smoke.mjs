// Smoke test of the ACS identity emulator with the official JS SDK.
//
//   ACS_CONNECTION_STRING="endpoint=...;accesskey=..." NODE_EXTRA_CA_CERTS=DIR/ca.pem \
//     node tests/emulator/js/smoke.mjs
//
// Prints one JSON object on stdout (tokens and ids) for the caller to check
// against the emulator's /_emulator/validate; exits non-zero on any failure.
import { createRequire } from "node:module";
import assert from "node:assert/strict";

const require = createRequire(import.meta.url);
const { CommunicationIdentityClient } = require("@azure/communication-identity");
const { AzureCommunicationTokenCredential } = require("@azure/communication-common");

const conn = process.env.ACS_CONNECTION_STRING;
assert.ok(conn, "ACS_CONNECTION_STRING is required");

const client = new CommunicationIdentityClient(conn, { retryOptions: { maxRetries: 0 } });
const out = {};

const endpoint = /endpoint=([^;]+)/i.exec(conn)[1].replace(/\/?$/, "/");

async function validate(token) {
  const res = await fetch(`${endpoint}_emulator/validate`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

async function expectStatus(promise, status, code) {
  try {
    await promise;
  } catch (err) {
    assert.equal(err.statusCode, status, `expected ${status}, got ${err.statusCode}: ${err.message}`);
    if (code) assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected HTTP ${status}`);
}

const user = await client.createUser();
assert.match(user.communicationUserId, /^8:acs:[0-9a-f-]+_[0-9a-f-]+$/);
out.userId = user.communicationUserId;

const tok1 = await client.getToken(user, ["chat", "voip"]);
assert.ok(tok1.token.split(".").length === 3);
assert.ok(tok1.expiresOn instanceof Date);
const hours = (tok1.expiresOn.getTime() - Date.now()) / 3600e3;
assert.ok(hours > 23.9 && hours <= 24, `default expiry ~24h, got ${hours}`);
out.tokenBeforeRevoke = tok1.token;
// RS256, header kid + x5t, like the service's tokens; the JS credential parses them.
const header = JSON.parse(Buffer.from(tok1.token.split(".")[0], "base64url").toString());
assert.equal(header.alg, "RS256");
assert.ok(header.kid && header.x5t);
const payload = JSON.parse(Buffer.from(tok1.token.split(".")[1], "base64url").toString());
const credential = new AzureCommunicationTokenCredential(tok1.token);
const credToken = await credential.getToken();
assert.equal(credToken.token, tok1.token);
assert.equal(credToken.expiresOnTimestamp, payload.exp * 1000);
credential.dispose();

const { user: user2, token: tok2, expiresOn: exp2 } = await client.createUserAndToken(["voip.join"], {
  tokenExpiresInMinutes: 60,
});
const minutes = (exp2.getTime() - Date.now()) / 60e3;
assert.ok(minutes > 59 && minutes <= 60, `custom expiry 60 min, got ${minutes}`);
out.user2Id = user2.communicationUserId;
out.user2Token = tok2;

await expectStatus(client.getToken(user, ["chat"], { tokenExpiresInMinutes: 59 }), 400, "ValidationError");
await expectStatus(client.getToken(user, ["not-a-scope"]), 400, "ValidationError");

await client.revokeTokens(user);
const tok3 = await client.getToken(user, ["chat"]);
out.tokenAfterRevoke = tok3.token;
assert.equal((await validate(tok1.token)).reason, "revoked");
assert.equal((await validate(tok3.token)).valid, true);

await client.deleteUser(user);
await expectStatus(client.getToken(user, ["chat"]), 404);
await expectStatus(client.revokeTokens(user), 404);
await expectStatus(client.deleteUser(user), 404);

await expectStatus(
  client.getTokenForTeamsUser({ teamsUserAadToken: "aad.jwt.token", clientId: "app", userObjectId: "oid" }),
  401,
  "InvalidAccessToken",
);

const badKey = conn.replace(/accesskey=[^;]*/i, "accesskey=QUFBQQ==");
await expectStatus(new CommunicationIdentityClient(badKey, { retryOptions: { maxRetries: 0 } }).createUser(), 401);

out.ok = true;
console.log(JSON.stringify(out));
