// Talking to chat: a streamed POST /chat, or (where the server announces no streaming) the jobs
// API. Both report the same way: onQueued({position, eta_s}) while waiting for the slot, then
// onText(theWholeAnswerSoFar) as it grows. The key goes in the Authorization header, never a URL.

export class ApiError extends Error {
  constructor(status, message, { code = null, requestId = null, retryAfterS = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfterS = retryAfterS;
  }
}

function headers(key, extra = {}) {
  const result = { "Content-Type": "application/json", ...extra };
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

function retryAfter(response, error) {
  const header = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  if (Number.isFinite(header)) return header;
  return Number.isFinite(error.retry_after_s) ? error.retry_after_s : null;
}

// Our envelope {"error": {...}}, Ollama's {"error": "..."}, or no JSON at all (a proxy's page).
async function failure(response) {
  let error = {};
  try {
    const body = await response.json();
    error = typeof body.error === "string" ? { message: body.error } : body.error ?? {};
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, error.message || `The server answered ${response.status}.`, {
    code: error.code ?? null,
    requestId: error.request_id ?? response.headers.get("X-Request-ID"),
    retryAfterS: retryAfter(response, error),
  });
}

function streamFailure(error, requestId) {
  return new ApiError(error.status ?? 502, error.message ?? "The answer was cut short.", {
    code: error.code ?? null,
    requestId: error.request_id ?? requestId,
    retryAfterS: error.retry_after_s ?? null,
  });
}

export async function getConfig() {
  const response = await fetch("v1/config");
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function listModels(key) {
  const response = await fetch("v1/models", { headers: headers(key) });
  if (!response.ok) throw await failure(response);
  const body = await response.json();
  return body.data.map((model) => model.id);
}

// NDJSON lines as they arrive: {"queued": {...}} while waiting, {"response": "..."} chunks,
// then {"done": true, ...}; a failure after the start is a last {"error": {...}} line.
export async function streamChat({ request, key, signal, onQueued, onText }) {
  const response = await fetch("chat", {
    method: "POST",
    headers: headers(key, { Accept: "application/x-ndjson" }),
    body: JSON.stringify({ ...request, stream: true }),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const requestId = response.headers.get("X-Request-ID");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let answer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (!line) continue;
      const event = JSON.parse(line);
      if (event.queued) {
        onQueued(event.queued);
      } else if (event.error) {
        throw streamFailure(event.error, requestId);
      } else {
        if (event.response) {
          answer += event.response;
          onText(answer);
        }
        if (event.done) return answer;
      }
    }
  }
  throw new ApiError(502, "The connection ended before the answer was complete.", { requestId });
}

function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

// Create a job, then poll it: its queue position while queued, its growing response while
// running. Stop cancels the job (DELETE), which closes Ollama's request at its next progress write.
export async function runJob({ request, key, signal, onQueued, onText, pollMs = 700 }) {
  const created = await fetch("v1/jobs", {
    method: "POST", headers: headers(key), body: JSON.stringify(request), signal,
  });
  if (!created.ok) throw await failure(created);
  const { id } = await created.json();
  const url = `v1/jobs/${encodeURIComponent(id)}`;
  const cancel = () => fetch(url, { method: "DELETE", headers: headers(key), keepalive: true });
  signal.addEventListener("abort", cancel, { once: true });
  try {
    for (;;) {
      const response = await fetch(url, { headers: headers(key), signal });
      if (!response.ok) throw await failure(response);
      const job = await response.json();
      if (job.status === "queued") onQueued({ position: job.queue_position, eta_s: null });
      else if (job.response) onText(job.response);
      if (job.status === "succeeded") return job.response ?? "";
      if (job.status !== "queued" && job.status !== "running") {
        const error = job.error ?? {};
        throw new ApiError(error.status ?? 500, error.message ?? `The job ended: ${job.status}.`, {
          code: error.code ?? job.status,
          requestId: error.request_id ?? response.headers.get("X-Request-ID"),
        });
      }
      await pause(pollMs, signal);
    }
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}
