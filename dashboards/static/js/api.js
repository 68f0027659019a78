// GraphQL over the dashboard's same-origin relay. The read key lives in sessionStorage only (gone when the
// tab closes) and travels in the X-API-Key header or the WebSocket connection_init payload, never in a URL.

const KEY = "pulseops.key";

export class ApiError extends Error {
  // kind: "auth" (bad key), "forbidden", "rate", "down" (API unreachable), "input", "graphql"
  constructor(kind, message, status = 0) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY); },
  get(name, fallback = null) { return sessionStorage.getItem(`pulseops.${name}`) ?? fallback; },
  set(name, value) { sessionStorage.setItem(`pulseops.${name}`, value); },
  clear() { sessionStorage.clear(); },
};

export async function gql(query, variables = {}, key = session.key) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-API-Key": key || "" },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError("down", "The dashboard server is not answering. Check that PulseOps is running.");
  }
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (response.status === 401) throw new ApiError("auth", "This key is unknown or revoked.", 401);
  if (response.status === 403) {
    throw new ApiError("forbidden", body?.detail?.[0]?.reason || "This key may not read (use a read key).", 403);
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After") || "1";
    throw new ApiError("rate", `Too many requests; retrying is allowed in ${wait} s.`, 429);
  }
  if (response.status === 502 || response.status === 503 || response.status === 504) {
    throw new ApiError("down", "The PulseOps API is not answering. Data will load when it is back.", response.status);
  }
  if (!response.ok || body === null) {
    throw new ApiError("graphql", `Unexpected answer from the API (HTTP ${response.status}).`, response.status);
  }
  if (body.errors?.length) {
    const e = body.errors[0];
    const code = e.extensions?.code;
    if (code === "SERVICE_UNAVAILABLE") throw new ApiError("down", e.message);
    if (code === "UNAUTHENTICATED") throw new ApiError("auth", e.message);
    throw new ApiError(code === "BAD_USER_INPUT" ? "input" : "graphql", e.message);
  }
  return body.data;
}

// graphql-transport-ws: one socket per subscription, reconnecting with backoff; returns a stop function.
export function subscribe(query, variables, { next, error, status }) {
  let ws = null;
  let stopped = false;
  let attempt = 0;
  let timer = null;
  const open = () => {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
    ws = new WebSocket(url, "graphql-transport-ws");
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: { apiKey: session.key } }));
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "connection_ack") {
        attempt = 0;
        status?.("live");
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query, variables } }));
      } else if (msg.type === "next") {
        if (msg.payload.errors?.length) error?.(new ApiError("graphql", msg.payload.errors[0].message));
        else next(msg.payload.data);
      } else if (msg.type === "error") {
        error?.(new ApiError("graphql", msg.payload?.[0]?.message || "subscription refused"));
      } else if (msg.type === "ping") {
        ws.send(JSON.stringify({ type: "pong" }));
      }
    };
    ws.onclose = () => {
      if (stopped) return;
      status?.("reconnecting");
      attempt += 1;
      timer = setTimeout(open, Math.min(10000, 500 * 2 ** Math.min(attempt, 5)));
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (ws && ws.readyState <= 1) {
      try { ws.send(JSON.stringify({ id: "1", type: "complete" })); } catch { /* closing anyway */ }
      ws.close(1000);
    }
  };
}
