// quota-dash: the editors show only the fields that count for the choice
// made: a rolling window's duration, a month's anchor day, a calendar
// window's rollover cap, a grant's expiry date or duration. Without
// JavaScript every field shows and the dashboard ignores those that do not
// apply.
"use strict";

// <label data-when="window=month|year"> shows while the form's field
// `window` is month or year.
function showRelevant(form) {
  form.querySelectorAll("[data-when]").forEach((el) => {
    const [name, values] = el.dataset.when.split("=");
    const field = form.elements.namedItem(name);
    if (!field) return;
    el.style.display = values.split("|").includes(field.value) ? "" : "none";
  });
}

document.querySelectorAll("form").forEach(showRelevant);
document.addEventListener("change", (event) => {
  const form = event.target.form;
  if (form) showRelevant(form);
});

// The new-policy form (data-existing: the path's policies, name → editor)
// says at once when the name typed is one the path already has: saving
// would be refused, its editor is the place to change it.
document.querySelectorAll("form[data-existing]").forEach((form) => {
  let existing = {};
  try { existing = JSON.parse(form.dataset.existing); } catch (e) { return; }
  const note = form.querySelector("#policy-exists");
  const name = form.elements.namedItem("policy");
  if (!note || !name) return;
  const check = () => {
    const url = Object.prototype.hasOwnProperty.call(existing, name.value.trim()) ? existing[name.value.trim()] : null;
    note.hidden = !url;
    if (url) {
      note.querySelector("b").textContent = name.value.trim();
      note.querySelector("a").setAttribute("href", url);
    }
  };
  name.addEventListener("input", check);
  check();
});
