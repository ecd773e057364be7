// JSON-RPC 2.0 over POST /rpc of the node that served this page.

const NOT_FOUND = 1001;
const INVALID_PARAMS = -32602;
const RPC_PATH = "/rpc";
const TIMEOUT_MS = 10000;

class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    this.data = data;
  }
}

/** True when the node said there is no such thing (or that the id given cannot name one). */
export function isNotFound(error) {
  return error instanceof RpcError && (error.code === NOT_FOUND || error.code === INVALID_PARAMS);
}

let nextId = 1;

function request(method, params) {
  const body = { jsonrpc: "2.0", method, id: nextId++ };
  if (params !== undefined) body.params = params;
  return body;
}

async function post(body) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const response = await fetch(RPC_PATH, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(`the node answered HTTP ${response.status}`);
    return await response.json();
  } catch (error) {
    if (error.name === "AbortError") throw new Error(`the node did not answer within ${TIMEOUT_MS / 1000} s`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function unwrap(response) {
  if (response.error) throw new RpcError(response.error.code, response.error.message, response.error.data);
  return response.result;
}

/** One call; resolves to its result or rejects with an RpcError (or an Error when the node is unreachable). */
export async function call(method, params) {
  return unwrap(await post(request(method, params)));
}

/** Several calls in one HTTP request; resolves to [{result} or {error: RpcError}] in the order given. */
export async function batch(calls) {
  if (calls.length === 0) return [];
  const requests = calls.map(([method, params]) => request(method, params));
  const responses = await post(requests);
  const byId = new Map(responses.map((response) => [response.id, response]));
  return requests.map((sent) => {
    try {
      return { result: unwrap(byId.get(sent.id)) };
    } catch (error) {
      return { error };
    }
  });
}
