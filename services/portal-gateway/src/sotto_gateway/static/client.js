// The client portal: secure-link verification, conversations, reply, sign-in, quick exit.
import { announce, api, characterCounter, cookie, formatTime, h, newId, problemText } from "./common.js";

const CSRF_KEY = "sotto.csrf";
const page = document.body.dataset.page;
const view = document.getElementById("view");
const status = document.getElementById("status");
const title = document.getElementById("practice-name");

function csrfToken() {
  return cookie("sotto_csrf") || sessionStorage.getItem(CSRF_KEY) || "";
}

function clientApi(method, path, body) {
  const headers = method === "GET" ? {} : { "X-CSRF-Token": csrfToken() };
  return api(method, path, { body, headers });
}

function show(...children) {
  view.replaceChildren(...children);
  const heading = view.querySelector("h2");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
}

function signInLink(url) {
  if (!url) return h("p", {}, "Ask your practice for the address of its portal page to sign in.");
  return h("p", {}, h("a", { href: url, className: "button" }, "Sign in from the portal page"));
}

function sessionEnded(answer) {
  const slug = sessionStorage.getItem("sotto.slug");
  show(
    h("section", { className: "card" },
      h("h2", {}, "Please sign in again"),
      h("p", {}, problemText(answer)),
      signInLink(slug ? `/o/${slug}/messages` : null)));
}

// ------------------------------------------------------------------ quick exit

async function quickExit() {
  const csrf = csrfToken();
  sessionStorage.clear();
  document.body.classList.add("leaving");
  view.replaceChildren();
  const signOut = fetch("/api/client/sign-out", {
    method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin", keepalive: true,
  }).catch(() => null);
  await Promise.race([signOut, new Promise((resolve) => window.setTimeout(resolve, 1500))]);
  window.location.replace("/exit");
}

document.getElementById("quick-exit").addEventListener("click", quickExit);
document.getElementById("sign-out").addEventListener("click", () => signOut());

// ------------------------------------------------------------------ conversation

function senderLabel(message, me) {
  if (message.automatic || !message.sender) return "Automatic reply";
  if (me && message.sender.kind === me.kind && message.sender.id === me.id) return "You";
  return message.sender.kind === "staff" ? "Your practice" : "Another participant";
}

function messageItem(message, me) {
  const who = senderLabel(message, me);
  if (message.removed) {
    return h("li", { className: "message removed" },
      h("p", { className: "meta" }, h("span", {}, who), h("time", { datetime: message.sent_at }, formatTime(message.sent_at))),
      h("p", { className: "body" }, "This message was removed."));
  }
  return h("li", { className: who === "You" ? "message mine" : "message" },
    h("p", { className: "meta" }, h("span", {}, who), h("time", { datetime: message.sent_at }, formatTime(message.sent_at))),
    h("p", { className: "body" }, message.body));
}

function replyForm(thread, conversationId, reload) {
  const limit = thread.max_message_length;
  const textarea = h("textarea", { id: "reply-body", name: "body", required: true, "aria-describedby": "reply-counter reply-note" });
  const counter = h("p", { id: "reply-counter", className: "counter", "aria-live": "off" });
  const note = h("div", { id: "reply-note" },
    h("p", { className: "hint" }, "Messages cannot be edited or deleted after you send them."),
    thread.edit_note ? h("p", { className: "banner edit-note" }, thread.edit_note) : null);
  const button = h("button", { type: "submit" }, "Send reply");
  const form = h("form", { className: "card", "aria-labelledby": "reply-heading" },
    h("h3", { id: "reply-heading" }, "Write a reply"),
    note,
    h("label", { for: "reply-body" }, "Your message"),
    textarea, counter,
    h("div", { className: "form-row" }, button));
  const updateCounter = characterCounter(textarea, counter, limit);
  let messageId = newId();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = textarea.value.trim();
    if (!body) {
      announce(status, "Write a message before sending.", "error");
      textarea.focus();
      return;
    }
    if (body.length > limit) {
      announce(status, `Your message is too long: at most ${limit} characters.`, "error");
      textarea.focus();
      return;
    }
    button.disabled = true;
    const answer = await clientApi("POST", `/api/client/conversations/${encodeURIComponent(conversationId)}/messages`, { body, message_id: messageId });
    button.disabled = false;
    if (answer.status === 401) return sessionEnded(answer);
    if (!answer.ok) {
      announce(status, problemText(answer), "error");
      return;
    }
    messageId = newId();
    textarea.value = "";
    updateCounter();
    await reload();
    announce(status, "Your reply was sent.", "success");
  });
  return form;
}

async function showConversation(conversationId, me, back) {
  const load = async () => {
    const answer = await clientApi("GET", `/api/client/conversations/${encodeURIComponent(conversationId)}`);
    if (answer.status === 401) return sessionEnded(answer);
    if (!answer.ok) {
      announce(status, problemText(answer), "error");
      return;
    }
    const thread = answer.data;
    show(
      h("section", { "aria-labelledby": "conversation-heading" },
        back ? h("p", {}, h("button", { type: "button", className: "secondary", onclick: back }, "Back to conversations")) : null,
        thread.banner ? h("p", { className: "banner", role: "note" }, thread.banner) : null,
        thread.away_message ? h("p", { className: "banner away", role: "note" }, thread.away_message) : null,
        h("h2", { id: "conversation-heading" }, thread.conversation.subject),
        h("ol", { className: "messages", "aria-label": "Messages" }, thread.messages.map((message) => messageItem(message, me))),
        replyForm(thread, conversationId, load)));
  };
  await load();
}

async function currentSession() {
  const answer = await clientApi("GET", "/api/client/session");
  if (!answer.ok) return null;
  const session = answer.data;
  if (session.practice_slug) sessionStorage.setItem("sotto.slug", session.practice_slug);
  title.textContent = session.practice_name;
  document.getElementById("sign-out").hidden = false;
  return session;
}

// ------------------------------------------------------------------ secure link page

const UNUSABLE_HEADINGS = {
  expired: "This link has expired",
  revoked: "This link is no longer valid",
  locked: "This link is locked",
  sign_in_instead: "Sign in to read this message",
  verified: "This link has already been used",
};

function showUnusable(answer) {
  const data = answer.data || {};
  const heading = UNUSABLE_HEADINGS[data.link_status] || "This link cannot be used";
  show(
    h("section", { className: "card", "aria-labelledby": "unusable-heading" },
      h("h2", { id: "unusable-heading" }, heading),
      h("p", {}, problemText(answer, "This link cannot be used.")),
      signInLink(data.sign_in_url)));
}

function attemptsText(left) {
  return left === 1 ? "You have 1 attempt left." : `You have ${left} attempts left.`;
}

function verificationForm(token, link) {
  const input = h("input", { id: "date-of-birth", name: "date_of_birth", type: "date", required: true, autocomplete: "bday", "aria-describedby": "dob-hint attempts" });
  const attempts = h("p", { id: "attempts", className: "hint" }, attemptsText(link.attempts_left));
  const button = h("button", { type: "submit" }, "Continue");
  const form = h("form", { className: "card", "aria-labelledby": "verify-heading", novalidate: true },
    h("h2", { id: "verify-heading" }, "Confirm it is you"),
    h("p", {}, `${link.practice_name} sent you a secure message. To read it, confirm your date of birth.`),
    h("label", { for: "date-of-birth" }, "Date of birth"),
    h("p", { id: "dob-hint", className: "hint" }, "As your practice has it on file."),
    input, attempts,
    h("div", { className: "form-row" }, button),
    link.sign_in_url ? h("p", { className: "hint" }, "Or ", h("a", { href: link.sign_in_url }, "sign in from the portal page"), " instead.") : null);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.value) {
      input.setAttribute("aria-invalid", "true");
      announce(status, "Enter your date of birth.", "error");
      input.focus();
      return;
    }
    button.disabled = true;
    const answer = await api("POST", `/api/client/links/${encodeURIComponent(token)}/verify`, { body: { date_of_birth: input.value } });
    button.disabled = false;
    if (answer.ok) {
      sessionStorage.setItem(CSRF_KEY, answer.data.csrf_token);
      announce(status, "Thank you. Opening your message.", "success");
      const session = await currentSession();
      await showConversation(answer.data.conversation_id, session && session.principal, null);
      return;
    }
    if (answer.status === 410) {
      showUnusable(answer);
      announce(status, UNUSABLE_HEADINGS[answer.data && answer.data.link_status] || "This link cannot be used.", "error");
      return;
    }
    if (answer.status === 422 && answer.data && answer.data.code === "verification_failed") {
      const left = answer.data.attempts_left;
      attempts.textContent = attemptsText(left);
      input.setAttribute("aria-invalid", "true");
      announce(status, `The details did not match. ${attemptsText(left)}`, "error");
      input.focus();
      return;
    }
    announce(status, problemText(answer), "error");
  });
  return form;
}

async function startLinkPage() {
  const token = decodeURIComponent(window.location.pathname.split("/l/")[1] || "");
  const answer = await api("POST", `/api/client/links/${encodeURIComponent(token)}/open`);
  if (answer.ok) {
    title.textContent = answer.data.practice_name;
    show(verificationForm(token, answer.data));
    return;
  }
  if (answer.status === 410 && answer.data && answer.data.link_status === "verified") {
    const session = await currentSession();
    if (session && session.conversation_id) {
      await showConversation(session.conversation_id, session.principal, null);
      return;
    }
  }
  if (answer.status === 410) return showUnusable(answer);
  show(
    h("section", { className: "card" },
      h("h2", {}, "This link cannot be used"),
      h("p", {}, answer.status === 404 ? "This link is not valid. Check that you copied all of it." : problemText(answer)),
      signInLink(null)));
}

// ------------------------------------------------------------------ practice portal page

function practiceSlug() {
  return decodeURIComponent(window.location.pathname.split("/")[2] || "");
}

function signInForm(slug) {
  const input = h("input", { id: "email", name: "email", type: "email", required: true, autocomplete: "email", "aria-describedby": "email-hint" });
  const button = h("button", { type: "submit" }, "Email me a sign-in link");
  const form = h("form", { className: "card", "aria-labelledby": "sign-in-heading", novalidate: true },
    h("h2", { id: "sign-in-heading" }, "Sign in to your messages"),
    h("label", { for: "email" }, "Email address"),
    h("p", { id: "email-hint", className: "hint" }, "We will email you a link that signs you in. It works once, for 15 minutes."),
    input,
    h("div", { className: "form-row" }, button));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.value.includes("@")) {
      input.setAttribute("aria-invalid", "true");
      announce(status, "Enter the email address your practice has for you.", "error");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    button.disabled = true;
    status.textContent = "";
    const answer = await api("POST", `/api/portal/${encodeURIComponent(slug)}/sign-in`, { body: { email: input.value.trim() } });
    button.disabled = false;
    announce(status, answer.ok ? answer.data.detail : problemText(answer), answer.ok ? "success" : "error");
  });
  return form;
}

function conversationItem(conversation, open) {
  return h("li", {},
    h("button", { type: "button", className: "item", onclick: () => open(conversation.conversation_id) },
      h("span", { className: "subject" },
        conversation.unread ? h("span", { className: "unread-dot" }, "New: ") : null,
        conversation.subject),
      h("span", { className: "when" }, formatTime(conversation.last_activity_at))));
}

async function showConversationList(session) {
  const answer = await clientApi("GET", "/api/client/conversations");
  if (answer.status === 401) return sessionEnded(answer);
  if (!answer.ok) {
    announce(status, problemText(answer), "error");
    return;
  }
  const back = () => showConversationList(session);
  const open = (id) => showConversation(id, session.principal, back);
  const items = answer.data;
  show(
    h("section", { className: "card", "aria-labelledby": "list-heading" },
      h("h2", { id: "list-heading" }, "Your conversations"),
      items.length
        ? h("ul", { className: "list" }, items.map((item) => conversationItem(item, open)))
        : h("p", {}, "You have no conversations yet.")));
}

async function signOut() {
  const slug = sessionStorage.getItem("sotto.slug");
  const answer = await clientApi("POST", "/api/client/sign-out");
  sessionStorage.clear();
  document.getElementById("sign-out").hidden = true;
  if (page === "portal") show(signInForm(practiceSlug()));
  else show(h("section", { className: "card" }, h("h2", {}, "You have signed out"), signInLink(slug ? `/o/${slug}/messages` : null)));
  announce(status, answer.ok || answer.status === 401 ? "You have signed out." : problemText(answer), answer.ok ? "success" : "error");
}

async function startPortalPage() {
  const slug = practiceSlug();
  const session = await currentSession();
  if (!session) {
    show(signInForm(slug));
    return;
  }
  await showConversationList(session);
}

if (page === "link") startLinkPage();
else if (page === "portal") startPortalPage();
