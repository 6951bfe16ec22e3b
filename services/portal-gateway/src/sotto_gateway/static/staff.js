// The reference staff inbox: token sign-in, filtered and paged inbox, thread with notes, tasks and
// copy-as-text, announcements.
import { announce, api, characterCounter, formatTime, h, newId, problemText, toClipboard } from "./common.js";

const TOKEN_KEY = "sotto.staffToken";
const status = document.getElementById("status");
const tokenForm = document.getElementById("token-form");
const workspace = document.getElementById("workspace");
const filters = document.getElementById("filters");
const inbox = document.getElementById("inbox");
const inboxCount = document.getElementById("inbox-count");
const threadPanel = document.getElementById("thread");
const signOutButton = document.getElementById("staff-sign-out");
const pager = document.getElementById("inbox-pages");
const newerButton = document.getElementById("inbox-newer");
const olderButton = document.getElementById("inbox-older");
const pageText = document.getElementById("inbox-page");
let me = null;
let team = new Map();  // staff id -> { display_name, roles, messaging_enabled }

function staffApi(method, path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  return api(method, `/api/staff${path}`, { body, headers: { Authorization: `Bearer ${token}` } });
}

function conversationPath(id, suffix = "") {
  return `/conversations/${encodeURIComponent(id)}${suffix}`;
}

async function failed(answer) {
  if (answer.status === 401) {
    signOut("Your token is no longer accepted. Sign in again.");
    return true;
  }
  if (!answer.ok) {
    announce(status, problemText(answer), "error");
    return true;
  }
  return false;
}

// ------------------------------------------------------------------ sign-in

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  inboxPage = 1;
  workspace.hidden = true;
  signOutButton.hidden = true;
  announcementProgress.textContent = "";
  document.getElementById("who").textContent = "";
  tokenForm.hidden = false;
  document.getElementById("staff-token").focus();
  announce(status, message, message === "You have signed out." ? "success" : "error");
}

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    tokenForm.hidden = false;
    return;
  }
  const answer = await staffApi("GET", "/me");
  if (!answer.ok) {
    signOut(answer.status === 401 ? "That token was not accepted." : problemText(answer));
    return;
  }
  me = answer.data;
  const colleagues = await staffApi("GET", "/team");
  team = new Map(colleagues.ok ? colleagues.data.map((member) => [member.staff_id, member]) : []);
  document.getElementById("who").textContent = `Signed in as ${me.display_name}`;
  tokenForm.hidden = true;
  workspace.hidden = false;
  signOutButton.hidden = false;
  const mayViewOthers = me.can_view_others_conversations || me.roles.includes("owner") || me.roles.includes("practice_manager");
  for (const option of document.querySelectorAll("#filter-view option")) {
    if (option.value !== "mine") option.disabled = !mayViewOthers;
  }
  showAnnouncementForm();
  appliedFilters = inboxQuery();
  inboxPage = 1;
  await loadInbox();
  document.getElementById("inbox-heading").focus();
}

tokenForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("staff-token").value.trim();
  if (!token) {
    announce(status, "Paste your staff token first.", "error");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("staff-token").value = "";
  await start();
});

signOutButton.addEventListener("click", () => signOut("You have signed out."));

// ------------------------------------------------------------------ announcements

const announcementSection = document.getElementById("announcement");
const announcementForm = document.getElementById("announcement-form");
const announcementSubject = document.getElementById("announcement-subject");
const announcementBody = document.getElementById("announcement-body");
const announcementProgress = document.getElementById("announcement-progress");
const ANNOUNCEMENT_POLL_MS = 1000;
const updateAnnouncementCounter = characterCounter(announcementBody, document.getElementById("announcement-counter"), 5000);

// Owners and managers announce to every client; a clinician to their own clients.
function announcementAudience() {
  if (me.roles.includes("owner") || me.roles.includes("practice_manager")) {
    return { clinicianId: null, text: "Goes to every active client of the practice: one conversation and one email each." };
  }
  if (me.roles.includes("clinician")) {
    return { clinicianId: me.staff_id, text: "Goes to each of your active clients: one conversation and one email each." };
  }
  return null;
}

function showAnnouncementForm() {
  const audience = announcementAudience();
  announcementSection.hidden = audience === null;
  if (audience) document.getElementById("announcement-audience").textContent = audience.text;
}

function clientsText(count) {
  return count === 1 ? "1 client" : `${count} clients`;
}

async function followAnnouncement(announcementId) {
  while (me) {
    const answer = await staffApi("GET", `/announcements/${encodeURIComponent(announcementId)}`);
    if (await failed(answer)) return;
    const progress = answer.data;
    if (progress.state === "sent") {
      announcementProgress.textContent = `Announcement sent to ${clientsText(progress.conversations)}.`;
      await loadInbox();  // the sender is assigned every new conversation
      return;
    }
    announcementProgress.textContent = `Sending the announcement: ${progress.conversations} of ${clientsText(progress.clients)} so far.`;
    await new Promise((resolve) => window.setTimeout(resolve, ANNOUNCEMENT_POLL_MS));
  }
}

announcementForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const subject = announcementSubject.value.trim();
  const body = announcementBody.value.trim();
  if (!subject || !body) {
    announce(status, "Write a subject and the announcement first.", "error");
    (subject ? announcementBody : announcementSubject).focus();
    return;
  }
  const announcementId = newId();
  const payload = { subject, body, announcement_id: announcementId };
  const audience = announcementAudience();
  if (audience && audience.clinicianId) payload.clinician_id = audience.clinicianId;
  const answer = await staffApi("POST", "/announcements", payload);
  if (await failed(answer)) return;
  announcementSubject.value = "";
  announcementBody.value = "";
  updateAnnouncementCounter();
  announce(status, `Announcement accepted for ${clientsText(answer.data.result.clients)}.`, "success");
  await followAnnouncement(announcementId);
});

// ------------------------------------------------------------------ inbox

function inboxQuery() {
  const query = new URLSearchParams();
  query.set("view", document.getElementById("filter-view").value);
  const search = document.getElementById("filter-search").value.trim();
  if (search) query.set("search", search);
  const since = document.getElementById("filter-since").value;
  if (since) query.set("since", new Date(`${since}T00:00:00`).toISOString());
  const until = document.getElementById("filter-until").value;
  if (until) query.set("until", new Date(`${until}T23:59:59.999`).toISOString());
  if (document.getElementById("filter-unread").checked) query.set("unread_only", "true");
  if (document.getElementById("filter-archived").checked) query.set("archived", "true");
  return query;
}

const INBOX_PAGE_SIZE = 25;
let appliedFilters = new URLSearchParams();  // the filters as last applied: paging keeps them
let inboxPage = 1;  // 1 is the newest
let inboxRequest = 0;  // only the latest request may draw the list

async function loadInbox() {
  const asked = ++inboxRequest;
  const query = new URLSearchParams(appliedFilters);
  query.set("page", String(inboxPage));
  query.set("page_size", String(INBOX_PAGE_SIZE));
  const answer = await staffApi("GET", `/inbox?${query}`);
  if (asked !== inboxRequest) return;  // a later request (another page, new filters) wins
  if (await failed(answer)) return;
  const page = answer.data;
  const pages = Math.max(1, Math.ceil(page.total / page.page_size));
  if (inboxPage > pages) {  // the list shrank under us (archived, reassigned): show its last page
    inboxPage = pages;
    await loadInbox();
    return;
  }
  inboxCount.textContent = page.total === 1 ? "1 conversation" : `${page.total} conversations`;
  pager.hidden = pages === 1;
  pageText.textContent = `Page ${inboxPage} of ${pages}`;
  newerButton.disabled = inboxPage <= 1;
  olderButton.disabled = inboxPage >= pages;
  inbox.replaceChildren(
    ...page.items.map((item) =>
      h("li", {},
        h("button", { type: "button", className: "item", "data-conversation": item.conversation_id, onclick: () => openThread(item.conversation_id) },
          h("span", { className: "subject" }, item.unread ? h("span", { className: "unread-dot" }, "Unread: ") : null, item.subject),
          h("span", {}, item.client_name || ""),
          item.assignee_id && item.assignee_id !== me.staff_id ? h("span", {}, `Assigned to ${staffName(item.assignee_id)}`) : null,
          h("span", { className: "when" }, formatTime(item.last_activity_at))))));
}

async function turnPage(step) {
  inboxPage = Math.max(1, inboxPage + step);
  await loadInbox();
  const [pressed, other] = step > 0 ? [olderButton, newerButton] : [newerButton, olderButton];
  if (pressed.disabled) other.focus();  // a disabled button drops focus: keep it in the pager
  announce(status, `${pageText.textContent}: ${inbox.children.length} of ${inboxCount.textContent}`, "info");
}

newerButton.addEventListener("click", () => turnPage(-1));
olderButton.addEventListener("click", () => turnPage(1));

filters.addEventListener("submit", async (event) => {
  event.preventDefault();
  appliedFilters = inboxQuery();
  inboxPage = 1;
  await loadInbox();
  announce(status, inboxCount.textContent, "info");
});

// ------------------------------------------------------------------ thread

function staffName(staffId) {
  if (staffId === me.staff_id) return "You";
  return team.get(staffId)?.display_name || `Team member ${staffId}`;
}

function senderName(message, conversation) {
  if (message.automatic || !message.sender) return "Automatic reply";
  if (message.sender.kind === "staff") return staffName(message.sender.id);
  if (message.sender.kind === "client") return conversation.client_name || "Client";
  return "Client's contact";
}

function isMine(message) {
  return !message.automatic && message.sender?.kind === "staff" && message.sender.id === me.staff_id;
}

function messageItem(message, conversation, reload) {
  const sender = senderName(message, conversation);
  const when = formatTime(message.sent_at);
  const select = h("input", { type: "checkbox", className: "select-message", "data-message": message.message_id });
  select.setAttribute("aria-label", `Select the message from ${sender}, sent ${when}`);
  const meta = h("p", { className: "meta" },
    h("label", { className: "check" }, select, h("span", {}, sender)),
    h("time", { datetime: message.sent_at }, when));
  if (message.removed) {
    return h("li", { className: "message removed" }, meta, h("p", { className: "body" }, "Message removed."));
  }
  const item = h("li", { className: isMine(message) ? "message mine" : "message" }, meta, h("p", { className: "body" }, message.body));
  if (!isMine(message)) return item;  // only the sender may remove a message
  const remove = h("button", { type: "button", className: "danger" }, "Remove");
  remove.setAttribute("aria-label", `Remove message sent ${when}`);
  let armed = false;
  remove.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      remove.textContent = "Confirm removal";
      remove.setAttribute("aria-label", `Confirm removal of the message sent ${when}`);
      announce(status, "Press again to remove this message for everyone.", "info");
      return;
    }
    const answer = await staffApi("DELETE", conversationPath(conversation.conversation_id, `/messages/${encodeURIComponent(message.message_id)}`));
    if (await failed(answer)) return;
    await reload();
    announce(status, "The message was removed.", "success");
  });
  item.append(h("div", { className: "form-row" }, remove));
  return item;
}

// Ticked messages as plain text for a chart note, from the API (it names senders and marks removals).
function copyControls(conversationId, list) {
  const output = h("textarea", { id: "copied-text", readonly: true, spellcheck: "false", "aria-describedby": "copied-hint" });
  const result = h("div", { className: "copied", hidden: true },
    h("label", { for: "copied-text" }, "Copied text"),
    h("p", { id: "copied-hint", className: "hint" }, "Read-only: select it and copy it into the chart note."),
    output);
  const button = h("button", { type: "button", className: "secondary" }, "Copy as text");
  button.addEventListener("click", async () => {
    const boxes = [...list.querySelectorAll("input.select-message:checked")];
    if (!boxes.length) {
      announce(status, "Tick the messages to copy first.", "error");
      list.querySelector("input.select-message")?.focus();
      return;
    }
    const answer = await staffApi("POST", conversationPath(conversationId, "/copy"), { message_ids: boxes.map((box) => box.dataset.message) });
    if (await failed(answer)) return;
    output.value = answer.data.text;
    result.hidden = false;
    const copied = await toClipboard(answer.data.text);
    output.focus();
    output.select();
    const count = boxes.length === 1 ? "1 message" : `${boxes.length} messages`;
    announce(status, copied ? `Copied ${count} to the clipboard.` : `${count} ready to copy from the text box.`, "success");
  });
  return h("div", { className: "copy-messages" },
    h("div", { className: "form-row" }, button, h("span", { className: "hint" }, "Tick messages above, then copy them as text for a chart note.")),
    result);
}

function textForm({ id, heading, label, button, limit, submit }) {
  const textarea = h("textarea", { id, required: true, "aria-describedby": limit ? `${id}-counter` : null });
  const counter = limit ? h("p", { id: `${id}-counter`, className: "counter" }) : null;
  const form = h("form", { "aria-labelledby": `${id}-heading` },
    h("h3", { id: `${id}-heading` }, heading),
    h("label", { for: id }, label), textarea, counter,
    h("div", { className: "form-row" }, h("button", { type: "submit" }, button)));
  const update = limit ? characterCounter(textarea, counter, limit) : () => {};
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = textarea.value.trim();
    if (!text) {
      announce(status, "Write something first.", "error");
      textarea.focus();
      return;
    }
    if (await submit(text)) {
      textarea.value = "";
      update();
    }
  });
  return form;
}

function taskItem(task, reload) {
  const box = h("input", { type: "checkbox", id: `task-${task.task_id}`, checked: task.done });
  box.addEventListener("change", async () => {
    const answer = await staffApi("PATCH", `/tasks/${encodeURIComponent(task.task_id)}`, { done: box.checked });
    if (await failed(answer)) return;
    await reload();
    announce(status, box.checked ? "Task done." : "Task reopened.", "success");
  });
  return h("li", {}, box,
    h("label", { for: `task-${task.task_id}`, className: "check" },
      task.title,
      task.due ? ` (due ${task.due})` : "",
      task.assignee_id ? `, for ${staffName(task.assignee_id)}` : ""));
}

function teamOptions(selectedId) {
  return [...team.values()].map((member) => h("option", { value: member.staff_id, selected: member.staff_id === selectedId },
    member.staff_id === me.staff_id ? `${me.display_name} (you)` : member.display_name));
}

function taskForm(conversationId, reload) {
  const title = h("input", { id: "task-title", type: "text", required: true, maxlength: "200" });
  const due = h("input", { id: "task-due", type: "date" });
  const owner = h("select", { id: "task-assignee" }, h("option", { value: "" }, "Nobody in particular"), teamOptions(null));
  const form = h("form", { "aria-labelledby": "task-heading" },
    h("h3", { id: "task-heading" }, "New task"),
    h("label", { for: "task-title" }, "Task"), title,
    h("label", { for: "task-due" }, "Due (optional)"), due,
    h("label", { for: "task-assignee" }, "For (optional)"), owner,
    h("div", { className: "form-row" }, h("button", { type: "submit" }, "Add task")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!title.value.trim()) {
      announce(status, "Name the task first.", "error");
      title.focus();
      return;
    }
    const body = { title: title.value.trim(), task_id: newId() };
    if (due.value) body.due = due.value;
    if (owner.value) body.assignee_id = owner.value;
    const answer = await staffApi("POST", conversationPath(conversationId, "/tasks"), body);
    if (await failed(answer)) return;
    await reload();
    announce(status, "Task added.", "success");
  });
  return form;
}

function assignForm(conversation, reload) {
  const current = conversation.assignee_id;
  const input = h("select", { id: "assignee", required: true },
    current ? null : h("option", { value: "", selected: true }, "Nobody yet"),
    current && !team.has(current) ? h("option", { value: current, selected: true }, staffName(current)) : null,  // no longer on the team
    teamOptions(current));
  const form = h("form", { className: "form-row", "aria-label": "Assign conversation" },
    h("div", {}, h("label", { for: "assignee" }, "Assigned to"), input),
    h("button", { type: "submit", className: "secondary" }, "Assign"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.value) {
      announce(status, "Choose a team member first.", "error");
      input.focus();
      return;
    }
    const answer = await staffApi("POST", conversationPath(conversation.conversation_id, "/assign"), { assignee_id: input.value });
    if (await failed(answer)) return;
    await reload();
    await loadInbox();
    announce(status, "Conversation assigned.", "success");
  });
  return form;
}

function actionButton(label, run) {
  return h("button", { type: "button", className: "secondary", onclick: run }, label);
}

async function openThread(conversationId) {
  const reload = async (focus = false) => {
    const answer = await staffApi("GET", conversationPath(conversationId));
    if (await failed(answer)) return;
    renderThread(answer.data, reload, focus);
  };
  await reload(true);
  await loadInbox();
}

function renderThread(thread, reload, focus) {
  const conversation = thread.conversation;
  const id = conversation.conversation_id;
  let messageId = newId();
  const archive = actionButton(conversation.archived ? "Unarchive" : "Archive", async () => {
    const answer = await staffApi("POST", conversationPath(id, conversation.archived ? "/unarchive" : "/archive"));
    if (await failed(answer)) return;
    await reload();
    await loadInbox();
    announce(status, conversation.archived ? "Conversation moved back to the inbox." : "Conversation archived.", "success");
  });
  const unread = actionButton("Mark unread", async () => {
    const answer = await staffApi("POST", conversationPath(id, "/unread"));
    if (await failed(answer)) return;
    await loadInbox();
    announce(status, "Marked unread.", "success");
  });
  const heading = h("h2", { id: "thread-heading", tabindex: "-1" }, conversation.subject);
  const messageList = h("ol", { className: "messages", "aria-label": "Messages" }, thread.messages.map((message) => messageItem(message, conversation, reload)));
  threadPanel.replaceChildren(...h("div", {},
    heading,
    h("p", { className: "hint" },
      conversation.client_name ? `Client: ${conversation.client_name}. ` : "",
      conversation.archived ? "Archived." : ""),
    h("div", { className: "form-row" }, unread, archive),
    assignForm(conversation, reload),
    thread.request_details ? h("p", { className: "banner" }, `Request details: ${thread.request_details}`) : null,
    h("h3", {}, "Messages"),
    messageList,
    copyControls(id, messageList),
    textForm({
      id: "staff-reply", heading: "Reply", label: "Message to the conversation", button: "Send reply",
      limit: thread.max_message_length,
      submit: async (body) => {
        const answer = await staffApi("POST", conversationPath(id, "/messages"), { body, message_id: messageId });
        if (await failed(answer)) return false;
        messageId = newId();
        await reload();
        announce(status, "Reply sent.", "success");
        return true;
      },
    }),
    h("section", { className: "notes", "aria-labelledby": "notes-heading" },
      h("h3", { id: "notes-heading" }, "Internal notes (never shown to clients)"),
      thread.notes.length
        ? thread.notes.map((note) => h("div", { className: "note" }, h("p", { className: "hint" }, `${staffName(note.author_id)}, ${formatTime(note.created_at)}`), note.body))
        : h("p", { className: "hint" }, "No notes yet."),
      textForm({
        id: "note-body", heading: "Add a note", label: "Note", button: "Add note",
        submit: async (body) => {
          const answer = await staffApi("POST", conversationPath(id, "/notes"), { body, note_id: newId() });
          if (await failed(answer)) return false;
          await reload();
          announce(status, "Note added.", "success");
          return true;
        },
      })),
    h("section", { className: "tasks", "aria-labelledby": "tasks-heading" },
      h("h3", { id: "tasks-heading" }, "Tasks"),
      thread.tasks.length ? h("ul", { className: "list" }, thread.tasks.map((task) => taskItem(task, reload))) : h("p", { className: "hint" }, "No tasks."),
      taskForm(id, reload))).childNodes);
  if (focus) heading.focus();
}

start();
