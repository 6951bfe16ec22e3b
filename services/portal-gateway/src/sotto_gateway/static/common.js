// Shared helpers: JSON API calls, safe DOM building, status announcements.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "className") element.className = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function cookie(name) {
  const found = document.cookie.split("; ").find((part) => part.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
}

// A 503 "busy" was refused before any work was done, so any call may be sent again after it.
const BUSY_RETRIES = 2;
const LONGEST_BUSY_WAIT_SECONDS = 5;

export async function api(method, path, options = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const answer = await apiOnce(method, path, options);
    if (answer.busyRetryAfter === null || attempt === BUSY_RETRIES) return answer;
    await new Promise((resolve) => window.setTimeout(resolve, answer.busyRetryAfter * 1000));
  }
}

function busyRetryAfter(response, data) {
  if (response.status !== 503 || !data || data.code !== "busy") return null;
  const header = response.headers.get("Retry-After");
  const seconds = header === null ? Number.NaN : Number(header);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds, LONGEST_BUSY_WAIT_SECONDS) : 1;
}

async function apiOnce(method, path, { body, headers = {} }) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    return { ok: false, status: 0, busyRetryAfter: null, data: { detail: "The service cannot be reached. Check your connection and try again." } };
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text };
    }
  }
  return { ok: response.ok, status: response.status, busyRetryAfter: busyRetryAfter(response, data), data };
}

export function problemText(answer, fallback = "Something went wrong. Please try again.") {
  return (answer.data && answer.data.detail) || fallback;
}

export function announce(region, text, kind = "info") {
  region.className = `status ${kind}`;
  region.textContent = "";
  // A fresh text node after clearing makes screen readers announce repeated messages too.
  window.setTimeout(() => {
    region.textContent = text;
  }, 30);
}

export function formatTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function newId() {
  return crypto.randomUUID ? crypto.randomUUID().replaceAll("-", "") : String(Date.now()) + Math.random().toString(16).slice(2);
}

export function characterCounter(textarea, output, limit) {
  const update = () => {
    const used = textarea.value.trim().length;
    output.textContent = `${used} of ${limit} characters`;
    output.classList.toggle("over", used > limit);
  };
  textarea.addEventListener("input", update);
  update();
  return update;
}

// Whether the text reached the clipboard; without permission (or focus) the caller's text box
// still holds it.
export async function toClipboard(text) {
  if (!window.isSecureContext || !navigator.clipboard) return false;
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
