// What the page keeps in this browser (localStorage), never on the server: the API key and the
// conversation (system prompt, model, messages).

const KEY = "chat.apiKey";
const CONVERSATION = "chat.conversation";

export function loadKey() {
  return localStorage.getItem(KEY) ?? "";
}

export function saveKey(key) {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

export function emptyConversation() {
  return { system: "", model: "", messages: [] };
}

export function loadConversation() {
  try {
    const saved = JSON.parse(localStorage.getItem(CONVERSATION) ?? "null");
    if (saved && Array.isArray(saved.messages)) {
      const messages = saved.messages.filter(
        (m) => (m.role === "user" || m.role === "assistant") && typeof m.content === "string",
      );
      return { system: String(saved.system ?? ""), model: String(saved.model ?? ""), messages };
    }
  } catch {
    // a damaged entry: start over
  }
  return emptyConversation();
}

export function saveConversation(conversation) {
  localStorage.setItem(CONVERSATION, JSON.stringify(conversation));
}
