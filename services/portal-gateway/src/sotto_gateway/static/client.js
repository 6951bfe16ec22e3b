// The client portal: secure-link verification, conversations, reply, new message, sign-in,
// switching between the records one address may act as, quick exit.
import { announce, api, characterCounter, cookie, formatTime, h, newId, problemText, toClipboard } from "./common.js";

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

function sessionEnded(answer, draft = null) {
  const slug = sessionStorage.getItem("sotto.slug");
  show(
    h("section", { className: "card" },
      h("h2", {}, "Please sign in again"),
      h("p", {}, problemText(answer)),
      draft ? h("p", {}, "Your message was not sent. It is still below: copy it before you leave or sign in again, as this page will not keep it.") : null,
      signInLink(slug ? `/o/${slug}/messages` : null)),
    draft);
  document.getElementById("sign-out").hidden = true;
  if (draft) announce(status, "Your message was not sent: your session has ended.", "error");
}

// A send that failed because the session ended: the typed fields themselves (moved, never
// copied into storage or the address) stay on the page for the client to copy; the thread
// they were answering goes with the session.
function unsentDraft(fields, textarea) {
  const described = (textarea.getAttribute("aria-describedby") || "").split(" ").filter((id) => fields.some((field) => field.id === id));
  if (described.length) textarea.setAttribute("aria-describedby", described.join(" "));
  else textarea.removeAttribute("aria-describedby");
  const copy = h("button", { type: "button", className: "secondary" }, "Copy my message");
  copy.addEventListener("click", async () => {
    textarea.focus();
    textarea.select();
    const copied = await toClipboard(textarea.value);
    announce(status, copied ? "Your message is copied." : "Your message is selected: copy it with your device's copy command.", "success");
  });
  return h("section", { className: "card unsent", "aria-labelledby": "unsent-heading" },
    h("h3", { id: "unsent-heading" }, "Your unsent message"),
    fields,
    h("div", { className: "form-row" }, copy));
}

function beforeWriting(settings, id) {
  return h("div", { id },
    h("p", { className: "hint" }, "Messages cannot be edited or deleted after you send them."),
    settings.edit_note ? h("p", { className: "banner edit-note" }, settings.edit_note) : null);
}

function practiceNotices(settings) {
  return [
    settings.banner ? h("p", { className: "banner", role: "note" }, settings.banner) : null,
    settings.away_message ? h("p", { className: "banner away", role: "note" }, settings.away_message) : null,
  ];
}

function checkedBody(textarea, limit) {
  const body = textarea.value.trim();
  if (!body) {
    announce(status, "Write a message before sending.", "error");
    textarea.focus();
    return null;
  }
  if (body.length > limit) {
    announce(status, `Your message is too long: at most ${limit} characters.`, "error");
    textarea.focus();
    return null;
  }
  return body;
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
  const label = h("label", { for: "reply-body" }, "Your message");
  const textarea = h("textarea", { id: "reply-body", name: "body", required: true, "aria-describedby": "reply-counter reply-note" });
  const counter = h("p", { id: "reply-counter", className: "counter", "aria-live": "off" });
  const button = h("button", { type: "submit" }, "Send reply");
  const form = h("form", { className: "card", "aria-labelledby": "reply-heading" },
    h("h3", { id: "reply-heading" }, "Write a reply"),
    beforeWriting(thread, "reply-note"),
    label, textarea, counter,
    h("div", { className: "form-row" }, button));
  const updateCounter = characterCounter(textarea, counter, limit);
  let messageId = newId();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = checkedBody(textarea, limit);
    if (body === null) return;
    button.disabled = true;
    const answer = await clientApi("POST", `/api/client/conversations/${encodeURIComponent(conversationId)}/messages`, { body, message_id: messageId });
    button.disabled = false;
    if (answer.status === 401) return sessionEnded(answer, unsentDraft([label, textarea, counter], textarea));
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
        practiceNotices(thread),
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

const RECIPIENT_ROLES = {
  primary_clinician: "your clinician",
  practice_manager: "practice manager",
  biller: "billing",
  scheduler: "scheduling",
};

function recipientLabel(recipient) {
  const role = RECIPIENT_ROLES[recipient.role];
  return role ? `${recipient.display_name} (${role})` : recipient.display_name;
}

async function showNewMessage(session, recipients, back) {
  const answer = await clientApi("GET", "/api/client/banners");
  if (answer.status === 401) return sessionEnded(answer);
  if (!answer.ok) {
    announce(status, problemText(answer), "error");
    return;
  }
  const settings = answer.data;
  const limit = settings.max_message_length;
  // the API lists the primary clinician first: the first option is the one preselected
  const to = h("select", { id: "new-to", name: "recipient_id", required: true },
    recipients.map((recipient, index) => h("option", { value: recipient.staff_id, selected: index === 0 }, recipientLabel(recipient))));
  const subjectLabel = h("label", { for: "new-subject" }, "Subject");
  const subject = h("input", { id: "new-subject", name: "subject", type: "text", required: true, maxlength: 200, autocomplete: "off" });
  const bodyLabel = h("label", { for: "new-body" }, "Your message");
  const textarea = h("textarea", { id: "new-body", name: "body", required: true, "aria-describedby": "new-counter new-note" });
  const counter = h("p", { id: "new-counter", className: "counter", "aria-live": "off" });
  const button = h("button", { type: "submit" }, "Send message");
  const form = h("form", { className: "card", "aria-labelledby": "new-heading", novalidate: true },
    h("h2", { id: "new-heading" }, "New message"),
    beforeWriting(settings, "new-note"),
    h("label", { for: "new-to" }, "To"), to,
    subjectLabel, subject,
    bodyLabel, textarea, counter,
    h("div", { className: "form-row" },
      button,
      h("button", { type: "button", className: "secondary", onclick: back }, "Cancel")));
  characterCounter(textarea, counter, limit);
  const conversationId = newId();  // kept across retries: a repeated send opens it once
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!subject.value.trim()) {
      subject.setAttribute("aria-invalid", "true");
      announce(status, "Give your message a subject.", "error");
      subject.focus();
      return;
    }
    subject.removeAttribute("aria-invalid");
    const body = checkedBody(textarea, limit);
    if (body === null) return;
    button.disabled = true;
    const sent = await clientApi("POST", "/api/client/conversations", {
      conversation_id: conversationId, recipient_id: to.value, subject: subject.value.trim(), body,
    });
    button.disabled = false;
    if (sent.status === 401) return sessionEnded(sent, unsentDraft([subjectLabel, subject, bodyLabel, textarea, counter], textarea));
    if (!sent.ok) {
      announce(status, problemText(sent), "error");
      return;
    }
    await showConversation(conversationId, session.principal, back);
    announce(status, "Your message was sent.", "success");
  });
  show(
    h("section", { "aria-label": "New message" },
      practiceNotices(settings),
      form));
}

function identityLabel(identity) {
  return identity.on_behalf_of ? `${identity.display_name}, for ${identity.on_behalf_of}` : identity.display_name;
}

// One address, several records (a partner who is a client too, a parent of two clients):
// choosing one starts a new session as that record.
function identityChooser(session) {
  if (!session.identities || session.identities.length < 2) return null;
  const current = `${session.principal.kind}:${session.principal.id}`;
  const select = h("select", { id: "identity" },
    session.identities.map((identity) => {
      const value = `${identity.principal.kind}:${identity.principal.id}`;
      return h("option", { value, selected: value === current }, identityLabel(identity));
    }));
  select.addEventListener("change", async () => {
    const chosen = session.identities.find((identity) => `${identity.principal.kind}:${identity.principal.id}` === select.value);
    const answer = await clientApi("POST", "/api/client/session/identity", { principal: chosen.principal });
    if (answer.status === 401) return sessionEnded(answer);
    if (!answer.ok) {
      select.value = current;
      announce(status, problemText(answer), "error");
      return;
    }
    sessionStorage.setItem(CSRF_KEY, answer.data.csrf_token);
    const next = await currentSession();
    if (!next) return sessionEnded(answer);
    await showConversationList(next);
    announce(status, `Now showing the conversations of ${identityLabel(chosen)}.`, "success");
  });
  return h("div", { className: "identity-choice" }, h("label", { for: "identity" }, "Viewing as"), select);
}

async function showConversationList(session) {
  // contacts reply but do not start; a secure-link session sees only its one conversation
  const mayStart = session.principal.kind === "client" && !session.conversation_id;
  const [answer, reachable] = await Promise.all([
    clientApi("GET", "/api/client/conversations"),
    mayStart ? clientApi("GET", "/api/client/recipients") : Promise.resolve({ ok: true, data: [] }),
  ]);
  if (answer.status === 401 || reachable.status === 401) return sessionEnded(answer.status === 401 ? answer : reachable);
  if (!answer.ok) {
    announce(status, problemText(answer), "error");
    return;
  }
  const back = () => showConversationList(session);
  const open = (id) => showConversation(id, session.principal, back);
  const items = answer.data;
  const recipients = reachable.ok ? reachable.data : [];
  let start = null;
  if (recipients.length) {
    start = h("div", { className: "form-row list-actions" },
      h("button", { type: "button", onclick: () => showNewMessage(session, recipients, back) }, "New message"));
  } else if (mayStart && reachable.ok) {
    start = h("p", { className: "hint" }, "Your practice has not set up anyone you can start a conversation with yet.");
  }
  show(
    h("section", { className: "card", "aria-labelledby": "list-heading" },
      h("h2", { id: "list-heading" }, "Your conversations"),
      identityChooser(session),
      start,
      items.length
        ? h("ul", { className: "list" }, items.map((item) => conversationItem(item, open)))
        : h("p", {}, "You have no conversations yet.")));
  if (!reachable.ok) announce(status, problemText(reachable), "error");
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
