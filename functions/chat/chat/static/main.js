// The chat page: wires the form, the conversation and the API together.
import { ApiError, getConfig, listModels, runJob, streamChat } from "./api.js";
import { element, messageItem, queueText, renderText } from "./render.js";
import { emptyConversation, loadConversation, loadKey, saveConversation, saveKey } from "./store.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), newChat: $("new-chat"), changeKey: $("change-key"), system: $("system"),
  log: $("log"), status: $("status"), composer: $("composer"), prompt: $("prompt"),
  send: $("send"), stop: $("stop"), keyDialog: $("key-dialog"), keyForm: $("key-form"),
  keyReason: $("key-reason"), key: $("key"), keyCancel: $("key-cancel"),
};

let config = { streaming: true, max_prompt_chars: 16000 };
let conversation = loadConversation();
let running = null; // the AbortController of the generation in progress
let countdown = null; // the interval of a Retry-After countdown
let afterKey = null; // what to do once a key is saved

function setStatus(text) {
  ui.status.textContent = text;
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  document.body.classList.toggle("busy", busy);
}

function renderConversation() {
  ui.system.value = conversation.system;
  ui.log.replaceChildren(...conversation.messages.map((m) => messageItem(m.role, m.content).item));
}

function scrollToEnd() {
  ui.log.lastElementChild?.scrollIntoView({ block: "end" });
}

// --- the API key ---------------------------------------------------------------------------

function askForKey(reason, then) {
  afterKey = then;
  ui.keyReason.textContent = reason;
  ui.key.value = "";
  if (!ui.keyDialog.open) ui.keyDialog.showModal();
  ui.key.focus();
}

ui.keyForm.addEventListener("submit", () => {
  saveKey(ui.key.value.trim());
  const then = afterKey;
  afterKey = null;
  then?.();
});
ui.keyCancel.addEventListener("click", () => {
  afterKey = null;
  ui.keyDialog.close();
});
ui.changeKey.addEventListener("click", () => askForKey("Enter the API key to use from now on.", loadModels));

// --- models --------------------------------------------------------------------------------

async function loadModels() {
  try {
    const models = await listModels(loadKey());
    ui.model.replaceChildren(...models.map((id) => new Option(id, id)));
    if (models.includes(conversation.model)) ui.model.value = conversation.model;
    conversation.model = ui.model.value;
    saveConversation(conversation);
    setStatus(models.length ? "" : "This key may not use any model.");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      const reason = loadKey() ? "That API key was not accepted. Enter another." : "This server needs an API key.";
      askForKey(reason, loadModels);
    } else {
      setStatus(`Could not list the models: ${error.message}`);
    }
  }
}

ui.model.addEventListener("change", () => {
  conversation.model = ui.model.value;
  saveConversation(conversation);
});
ui.system.addEventListener("input", () => {
  conversation.system = ui.system.value;
  saveConversation(conversation);
});

// --- a generation --------------------------------------------------------------------------

function stopCountdown() {
  if (countdown !== null) clearInterval(countdown);
  countdown = null;
}

// An error a person can act on: the message; a countdown and one Retry button for 429/503;
// the request id for server errors (5xx), to quote to whoever runs the server.
function showError(body, error) {
  const box = element("div", "error");
  box.setAttribute("role", "alert");
  box.append(element("p", null, error.message));
  if (error.status >= 500 && error.requestId) {
    box.append(element("p", "request-id", `Request id: ${error.requestId}`));
  }
  if (error.status === 429 || error.status === 503) {
    const wait = element("p", "countdown");
    const retry = element("button", "retry", "Retry");
    retry.type = "button";
    let left = Math.max(1, error.retryAfterS ?? 5);
    const tick = () => {
      wait.textContent = left > 0 ? `You can try again in ${left} s.` : "You can try again now.";
      if (left <= 0) stopCountdown();
      left -= 1;
    };
    stopCountdown();
    tick();
    countdown = setInterval(tick, 1000);
    retry.addEventListener("click", () => {
      stopCountdown();
      body.closest("li")?.remove();
      generate();
    });
    box.append(wait, retry);
  }
  body.querySelectorAll(".queued").forEach((node) => node.remove());
  body.append(box); // after what had arrived, if the stream broke midway
}

async function generate() {
  stopCountdown();
  const { item, body } = messageItem("assistant", "");
  item.classList.add("pending");
  ui.log.append(item);
  scrollToEnd();
  setStatus("Sending…");
  const controller = new AbortController();
  running = controller;
  setBusy(true);
  let answer = "";
  const thread = conversation; // "New chat" may replace it meanwhile: the answer belongs here
  const request = { messages: thread.messages, model: thread.model || undefined };
  if (thread.system.trim()) request.system = thread.system;
  const talk = config.streaming ? streamChat : runJob;
  try {
    answer = await talk({
      request,
      key: loadKey(),
      signal: controller.signal,
      onQueued: (queued) => {
        const text = queueText(queued);
        setStatus(text);
        body.replaceChildren(element("p", "queued", text));
      },
      onText: (text) => {
        if (!answer) setStatus("Answering…");
        answer = text;
        renderText(body, text);
        scrollToEnd();
      },
    });
    item.classList.remove("pending");
    setStatus("");
    thread.messages.push({ role: "assistant", content: answer });
  } catch (error) {
    item.classList.remove("pending");
    if (controller.signal.aborted) {
      setStatus("Stopped.");
      item.classList.add("stopped");
      if (answer) thread.messages.push({ role: "assistant", content: answer });
      else item.remove();
    } else if (error instanceof ApiError && error.status === 401) {
      item.remove();
      setStatus("An API key is needed.");
      const reason = loadKey() ? "That API key was not accepted. Enter another." : "This server needs an API key.";
      askForKey(reason, () => loadModels().then(generate));
    } else {
      setStatus(error.message);
      showError(body, error instanceof ApiError ? error : new ApiError(0, `The request failed: ${error.message}`));
    }
  } finally {
    if (running === controller) running = null;
    setBusy(false);
    if (thread === conversation) saveConversation(conversation);
  }
}

function send() {
  const text = ui.prompt.value.trim();
  if (!text || running) return;
  if (text.length > config.max_prompt_chars) {
    setStatus(`The message is longer than ${config.max_prompt_chars} characters.`);
    return;
  }
  // A failed attempt left no answer: drop its error before the next question.
  ui.log.querySelectorAll("li .error").forEach((node) => node.closest("li").remove());
  conversation.messages.push({ role: "user", content: text });
  saveConversation(conversation);
  ui.log.append(messageItem("user", text).item);
  ui.prompt.value = "";
  generate();
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
ui.stop.addEventListener("click", () => running?.abort());
ui.newChat.addEventListener("click", () => {
  running?.abort();
  stopCountdown();
  conversation = { ...emptyConversation(), model: ui.model.value, system: conversation.system };
  saveConversation(conversation);
  renderConversation();
  setStatus("");
  ui.prompt.focus();
});

// --- start ---------------------------------------------------------------------------------

renderConversation();
try {
  config = await getConfig();
} catch (error) {
  setStatus(`Could not read the server's settings: ${error.message}`);
}
document.body.dataset.transport = config.streaming ? "stream" : "jobs";
await loadModels();
document.body.dataset.ready = "true";
