// Live conference view: re-render from server-sent events; send controls with fetch (CSRF header).
(function () {
  "use strict";
  const root = document.getElementById("live");
  if (!root) { return; }
  const base = root.dataset.base;
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const statusLine = document.getElementById("live-status");
  const tbody = document.querySelector("#legs tbody");
  const controls = document.getElementById("conf-controls");

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) { node.setAttribute(k, v); }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function button(path, label, fields, cls) {
    const form = el("form", { method: "post", action: base + path, class: "inline" });
    form.appendChild(el("input", { type: "hidden", name: "csrf_token", value: token }));
    for (const [k, v] of Object.entries(fields || {})) {
      form.appendChild(el("input", { type: "hidden", name: k, value: String(v) }));
    }
    form.appendChild(el("button", { type: "submit", class: cls || "" }, label));
    return form;
  }

  function setStatus(text, ok) {
    statusLine.textContent = text;
    statusLine.className = "flash " + (ok ? "info" : "error");
  }

  function render(conf) {
    setStatus("Live", true);
    controls.replaceChildren();
    const p = el("p");
    p.append("Recording: ", el("strong", { id: "rec-state" }, conf.recording ? "on" : "off"),
      " · Locked: ", el("strong", { id: "lock-state" }, conf.locked ? "yes" : "no"));
    const actions = el("p", { class: "actions" });
    actions.append(
      button("/recording", conf.recording ? "Stop recording" : "Start recording", { on: conf.recording ? 0 : 1 }),
      button("/lock", conf.locked ? "Unlock" : "Lock", { locked: conf.locked ? 0 : 1 }),
      button("/end", "End conference", {}, "danger"));
    controls.append(p, actions);
    tbody.replaceChildren();
    for (const leg of conf.legs) {
      const tr = el("tr", { id: "leg-" + leg.leg_id, class: "status-" + leg.status });
      tr.append(el("td", {}, leg.name), el("td", {}, leg.number), el("td", {}, leg.role),
        el("td", { class: "leg-status" }, leg.status));
      const talking = el("td", { class: "talking" });
      if (leg.talking) { talking.appendChild(el("span", { class: "talk on" }, "talking")); }
      tr.append(talking, el("td", { class: "muted-state" }, leg.muted ? "muted" : ""));
      const cell = el("td");
      cell.append(
        button("/legs/" + leg.leg_id + "/mute", leg.muted ? "Unmute" : "Mute", { muted: leg.muted ? 0 : 1 }),
        button("/legs/" + leg.leg_id + "/kick", "Kick", {}, "danger"));
      tr.appendChild(cell);
      tbody.appendChild(tr);
    }
  }

  // Controls: post with fetch and let the event stream show the result.
  root.addEventListener("submit", async (event) => {
    const form = event.target;
    const confirmText = form.querySelector("button[data-confirm]");
    if (confirmText && !window.confirm(confirmText.dataset.confirm)) { event.preventDefault(); return; }
    event.preventDefault();
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRFToken": token },
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({ error: response.statusText }));
        setStatus("Not done: " + (body.error || response.status), false);
      } else if (form.id === "dial-form") {
        form.reset();
      }
    } catch (err) {
      setStatus("Not done: " + err, false);
    }
  });

  const source = new EventSource(root.dataset.events);
  source.addEventListener("state", (event) => render(JSON.parse(event.data)));
  source.addEventListener("unreachable", () => setStatus("The engine is unreachable.", false));
  source.addEventListener("ended", () => {
    setStatus("This conference has ended.", false);
    controls.replaceChildren();
    source.close();
  });
})();
