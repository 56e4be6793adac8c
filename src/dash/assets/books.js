// quota-dash: the estimate calculator's "Add a row" (the price's page).
// Without JavaScript the calculator has a fixed number of rows.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const add = document.getElementById("add-row");
  const rows = document.getElementById("estimate-rows");
  if (!add || !rows) return;
  add.hidden = false;
  add.addEventListener("click", () => {
    const last = rows.querySelector(".estimate-row:last-child");
    if (!last) return;
    const row = last.cloneNode(true);
    row.querySelectorAll("input").forEach((input) => {
      input.value = "";
      input.removeAttribute("list");
      if (input.name === "value") input.placeholder = "quantity";
    });
    rows.appendChild(row);
    row.querySelector("input").focus();
  });
});
