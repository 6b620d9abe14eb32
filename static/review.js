// Review form: move, remove and add operations without a page reload. Without JavaScript the form
// still works: the "Order" numbers order the rows, "Remove" boxes drop them, spare rows add them.
(function () {
  "use strict";
  var body = document.getElementById("edit-rows");
  if (!body) { return; }
  var form = document.getElementById("edit-review-form");

  function rows() { return Array.prototype.slice.call(body.querySelectorAll("tr.op-row")); }
  function renumber() {
    rows().forEach(function (row, index) {
      row.querySelector("input.order").value = 10 * (index + 1);
      row.querySelectorAll("[data-label]").forEach(function (el) {
        el.setAttribute("aria-label", el.dataset.label + " " + (index + 1));
      });
    });
  }
  function button(text, label, onClick) {
    var b = document.createElement("button");
    b.type = "button"; b.className = "small secondary"; b.textContent = text; b.dataset.label = label;
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }
  function enhance(row) {
    var cell = row.lastElementChild;
    cell.innerHTML = "";
    cell.appendChild(button("↑", "Move up operation", function () {
      var prev = row.previousElementSibling; if (prev) { body.insertBefore(row, prev); renumber(); this.focus(); }
    }));
    cell.appendChild(button("↓", "Move down operation", function () {
      var next = row.nextElementSibling; if (next) { body.insertBefore(next, row); renumber(); this.focus(); }
    }));
    cell.appendChild(button("Remove", "Remove operation", function () {
      var focusTo = row.nextElementSibling || row.previousElementSibling;
      row.remove(); renumber();
      var target = focusTo ? focusTo.querySelector("select") : document.getElementById("add-operation");
      if (target) { target.focus(); }
    }));
    var order = row.querySelector("input.order");
    order.type = "hidden";
    order.closest("td").classList.add("order-cell");
  }

  var template = rows()[rows().length - 1].cloneNode(true);
  // Spare empty rows are only for pages without JavaScript: "Add operation" replaces them.
  rows().forEach(function (row) {
    var empty = Array.prototype.every.call(row.querySelectorAll("select, input[type=number]:not(.order)"), function (el) { return !el.value; });
    if (empty && rows().length > 1) { row.remove(); }
  });
  rows().forEach(enhance);
  document.querySelector("table.edit-routing thead th:first-child").textContent = "";
  document.querySelector("table.edit-routing thead th:last-child").textContent = "Move / remove";

  var next = 1000;
  var add = document.createElement("button");
  add.type = "button"; add.id = "add-operation"; add.className = "secondary"; add.textContent = "Add operation";
  add.addEventListener("click", function () {
    var row = template.cloneNode(true);
    next += 1;
    row.classList.remove("has-error");
    row.dataset.n = String(next);
    row.querySelectorAll(".field-error").forEach(function (el) { el.remove(); });
    row.querySelectorAll("[name]").forEach(function (el) {
      el.name = el.name.replace(/^op-\d+-/, "op-" + next + "-");
      el.removeAttribute("aria-invalid");
      if (el.tagName === "SELECT") { el.selectedIndex = 0; } else if (el.type !== "checkbox") { el.value = ""; }
    });
    body.appendChild(row);
    enhance(row);
    renumber();
    row.querySelector("select").focus();
  });
  form.querySelector("#save-edited").insertAdjacentElement("beforebegin", add);
  renumber();
})();
