// Everything a person or a model wrote becomes text nodes (textContent), never parsed as HTML.
// The one bit of Markdown understood is the code fence (```), shown as a code block; line
// breaks are kept by CSS (white-space: pre-wrap).

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderText(container, text) {
  const parts = text.split("```");
  const nodes = [];
  parts.forEach((part, index) => {
    if (index % 2 === 0) {
      if (part.trim()) nodes.push(element("div", "text", part.replace(/^\n+|\n+$/g, "")));
      return;
    }
    const newline = part.indexOf("\n");
    const language = newline > 0 ? part.slice(0, newline).trim() : "";
    const code = element("code", null, newline >= 0 ? part.slice(newline + 1).replace(/\n$/, "") : part);
    if (language) code.dataset.language = language;
    const pre = element("pre");
    pre.append(code);
    nodes.push(pre);
  });
  container.replaceChildren(...nodes);
}

export function messageItem(role, text) {
  const item = element("li", `message ${role}`);
  item.append(element("span", "who", role === "user" ? "You" : "Model"));
  const body = element("div", "body");
  item.append(body);
  if (text) renderText(body, text);
  return { item, body };
}

export function ordinal(n) {
  const tens = n % 100;
  if (tens >= 11 && tens <= 13) return `${n}th`;
  return `${n}${{ 1: "st", 2: "nd", 3: "rd" }[n % 10] ?? "th"}`;
}

// "3rd in line · about 20 s" (the jobs API on AWS knows no position: "Waiting in line…").
export function queueText({ position, eta_s: etaS }) {
  const where = Number.isInteger(position) && position > 0 ? `${ordinal(position)} in line` : "Waiting in line";
  return Number.isFinite(etaS) ? `${where} · about ${Math.max(1, Math.round(etaS))} s` : `${where}…`;
}

export { element };
