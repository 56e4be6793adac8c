// quota-dash: the tree pane. A toggle shows or hides a node's children,
// fetching them the first time (/trees/{key}/children, an HTML fragment of
// one page of 200); "N more…" fetches the next page after the last child
// shown, and "names before c…" (on the way to a deep path) the names
// between the child above it and c. The page works without it: every node
// is a link.
"use strict";

(() => {
  const pane = document.getElementById("tree");
  if (!pane) return;

  const childrenUrl = (path, after, before) => {
    const url = new URL(pane.dataset.children, window.location.href);
    url.searchParams.set("path", path);
    if (after) url.searchParams.set("after", after);
    if (before) url.searchParams.set("before", before);
    if (pane.dataset.tag) url.searchParams.set("tag", pane.dataset.tag);
    if (pane.dataset.archived) url.searchParams.set("archived", "1");
    return url.toString();
  };

  const fetchRows = async (path, after, before) => {
    const response = await fetch(childrenUrl(path, after, before), { headers: { "Accept": "text/html" } });
    const body = await response.text();
    if (!response.ok && !body.includes("<li")) {
      throw new Error("the dashboard answered " + response.status);
    }
    return body;
  };

  const failed = (where, e) => {
    const li = document.createElement("li");
    li.className = "error";
    li.setAttribute("role", "alert");
    li.textContent = e.message;
    where.appendChild(li);
  };

  const toggle = async (button) => {
    const node = button.closest("li.node");
    if (!node || button.disabled) return;
    let list = node.querySelector(":scope > ul.children");
    const open = button.getAttribute("aria-expanded") === "true";
    if (list) {
      list.hidden = open;
      button.setAttribute("aria-expanded", String(!open));
      return;
    }
    button.disabled = true;
    node.classList.add("loading");
    list = document.createElement("ul");
    list.className = "children";
    try {
      list.innerHTML = await fetchRows(node.dataset.path, "");
    } catch (e) {
      failed(list, e);
    }
    node.appendChild(list);
    node.classList.remove("loading");
    button.disabled = false;
    button.setAttribute("aria-expanded", "true");
    if (list.querySelector(":scope > li.leaf-note")) {
      button.classList.add("empty");
    }
  };

  const more = async (button) => {
    const row = button.closest("li.more");
    if (!row || button.disabled) return;
    button.disabled = true;
    button.textContent = "loading…";
    try {
      row.insertAdjacentHTML("beforebegin", await fetchRows(button.dataset.path, button.dataset.after, button.dataset.before));
      row.remove();
    } catch (e) {
      button.disabled = false;
      button.textContent = "try again";
      failed(row.parentElement, e);
    }
  };

  pane.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    const t = target && target.closest("button.toggle");
    if (t) {
      event.preventDefault();
      toggle(t);
      return;
    }
    const m = target && target.closest("button.more-btn");
    if (m) {
      event.preventDefault();
      more(m);
    }
  });

  // The selected row in view (a tree opened deep in a long list).
  const selected = pane.querySelector(".node-row.selected");
  if (selected && selected.scrollIntoView) selected.scrollIntoView({ block: "nearest" });
})();
