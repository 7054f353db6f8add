// The console's JSON API, with its errors as exceptions.

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** Calls the console's API; a body makes it a POST with the header the CSRF guard asks for. */
export async function api(path, body) {
  const init = { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-Subnode-Request"] = "1";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError("the console cannot be reached", 0);
  }
  if (response.status === 401) {
    // The session ended (the engine restarted, or another login pushed it out).
    location.assign("/login");
    throw new ApiError("signed out", 401);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = typeof data?.error === "string" ? data.error : `HTTP ${response.status}`;
    throw new ApiError(message, response.status);
  }
  return data;
}
