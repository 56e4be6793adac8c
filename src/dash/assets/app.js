// quota-dash: the little JavaScript every page shares. Pages work without it;
// with it, forms marked data-ajax show a command's error beside the form
// (keeping what was typed) and reload the page on success, and buttons
// marked data-confirm ask first.
"use strict";

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const question = event.submitter && event.submitter.dataset.confirm || form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (!("ajax" in form.dataset)) return;
  event.preventDefault();
  const body = new URLSearchParams(new FormData(form, event.submitter));
  let box = form.querySelector(".error");
  if (!box) {
    box = document.createElement("p");
    box.className = "error";
    box.setAttribute("role", "alert");
    form.appendChild(box);
  }
  box.textContent = "";
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const response = await fetch(form.action, {
      method: "POST",
      headers: { "Accept": "application/json" },
      body,
    });
    const reply = await response.json().catch(() => ({ ok: false, error: "the dashboard answered " + response.status }));
    if (reply.ok) {
      const url = new URL(
        // data-next="" asks for the page the dashboard names (reply.next:
        // the tree page at the path the form wrote to).
        form.dataset.next || (form.hasAttribute("data-next") && reply.next) || window.location.href, window.location.href);
      if (url.origin !== window.location.origin) return;
      url.searchParams.delete("error");
      url.searchParams.set("done", reply.message || "Done");
      url.searchParams.set("sig", reply.sig || "");
      window.location.assign(url.toString());
      return;
    }
    box.textContent = reply.error || "refused";
  } catch (e) {
    box.textContent = "the dashboard could not be reached: " + e.message;
  }
  buttons.forEach((b) => { b.disabled = false; });
});
