// The path segment that names an app user in the admin routes (/api/users/{userId}).
//
// Every user id has exactly one path form: the id itself, unless it contains "/" or "%",
// starts with "b64.", or is "." or ".."; then "b64." + the unpadded base64url of its UTF-8
// bytes. The service refuses any other spelling with a 400 that names this form. The form
// is then percent-encoded like any path segment.
//
//   userPathSegment("alice@contoso.com")  // "alice%40contoso.com"
//   userPathSegment("a/b")                // "b64.YS9i"

export function userPathForm(userId) {
  if (userId.includes("/") || userId.includes("%") || userId.startsWith("b64.") ||
      userId === "." || userId === "..") {
    return "b64." + Buffer.from(userId, "utf8").toString("base64url");
  }
  return userId;
}

export function userPathSegment(userId) {
  return encodeURIComponent(userPathForm(userId));
}
