// Selecting pictures on a grid: ticks, shift-click ranges, "Select page" and "Select all N
// matches", space or x on a focused tile, Escape to clear, and a long press on a phone.
// While something is selected a click (or tap) on a tile ticks it instead of opening it.
// Without JavaScript the ticks and the bar still work as a plain form.
(function () {
  "use strict";
  const bar = document.getElementById("selection");
  if (!bar) return;
  const tools = document.querySelector(".select-tools");
  const count = bar.querySelector(".selection-count");
  const everyInput = bar.querySelector('input[name="every"]');
  const total = parseInt(bar.dataset.total || "0", 10);
  const checks = () => Array.from(document.querySelectorAll('input[name="ids"][form="selection"]'));
  const allButton = tools && tools.querySelector('[data-select="all"]');
  // The check ticked last, where a shift-click's range starts: one ticked before this
  // deferred script ran (a quick click, or the browser restoring the form) counts too.
  let last = checks().filter((c) => c.checked).pop() || null;

  function picked() { return checks().filter((c) => c.checked); }

  function update() {
    const n = everyInput.value ? total : picked().length;
    bar.hidden = n === 0;
    count.textContent = everyInput.value ? "All " + total.toLocaleString("en") + " matches selected"
      : n + (n === 1 ? " picture selected" : " pictures selected");
    if (allButton) allButton.hidden = !bar.dataset.every || total <= checks().length || !!everyInput.value;
  }

  // Tick (or untick) a check, or the range from the last one ticked to it.
  function apply(check, on, range) {
    const list = checks();
    if (range && last && list.includes(last)) {
      const [from, to] = [list.indexOf(last), list.indexOf(check)].sort((a, b) => a - b);
      list.slice(from, to + 1).forEach((c) => { c.checked = on; });
    } else {
      check.checked = on;
    }
    everyInput.value = "";  // a change by hand selects what is ticked, not every match
    last = check;
    update();
  }

  function clear() {
    checks().forEach((c) => { c.checked = false; });
    everyInput.value = "";
    last = null;
    update();
  }

  if (tools) tools.hidden = false;
  if (allButton) allButton.textContent = "Select all " + total.toLocaleString("en") + " matches";

  // A long press on a phone ticks the tile; the tap that ends it opens nothing.
  let timer = null;
  let pressed = false;
  document.addEventListener("touchstart", (event) => {
    const tile = event.target.closest(".hit");
    const check = tile && tile.querySelector('input[name="ids"][form="selection"]');
    pressed = false;
    if (!check || event.target.closest(".pick")) return;
    timer = setTimeout(() => { pressed = true; apply(check, !check.checked, false); }, 450);
  }, { passive: true });
  ["touchend", "touchmove", "touchcancel"].forEach((name) =>
    document.addEventListener(name, () => { clearTimeout(timer); }, { passive: true }));
  document.addEventListener("contextmenu", (event) => {
    if (pressed && event.target.closest(".hit")) event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-select]");
    if (button) {
      const what = button.dataset.select;
      if (what === "none") { clear(); return; }
      checks().forEach((c) => { c.checked = true; });
      everyInput.value = what === "all" ? bar.dataset.every : "";
      update();
      return;
    }
    const tile = event.target.closest(".hit");
    const check = tile && tile.querySelector('input[name="ids"][form="selection"]');
    if (!check) return;
    if (pressed) {  // the end of a long press, which ticked the tile already
      pressed = false;
      event.preventDefault();
      event.stopPropagation();
      return;
    }
    if (event.target === check) {
      apply(check, check.checked, event.shiftKey);  // the browser has ticked it already
    } else if (event.target.closest(".pick")) {
      event.preventDefault();  // the label would tick it a second time
      apply(check, !check.checked, event.shiftKey);
    } else if (picked().length && !event.ctrlKey && !event.metaKey) {
      // While selecting, a click on a tile ticks it instead of opening the viewer.
      event.preventDefault();
      event.stopPropagation();
      apply(check, !check.checked, event.shiftKey);
    }
  }, true);

  document.addEventListener("keydown", (event) => {
    if (document.body.classList.contains("viewer-open")) return;
    if (event.key === "Escape" && (picked().length || everyInput.value)) { clear(); return; }
    const tile = event.target.closest && event.target.closest(".hit");
    const check = tile && tile.querySelector('input[name="ids"][form="selection"]');
    if (!check || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "x" || (event.key === " " && event.target !== check)) {
      event.preventDefault();
      apply(check, !check.checked, event.shiftKey);
    }
  });

  // The bar's buttons that destroy something ask first: confirm.js (their data-confirm).
  // Space on a focused check ticks it without a click.
  document.addEventListener("change", (event) => {
    if (event.target.matches && event.target.matches('input[name="ids"][form="selection"]')) {
      everyInput.value = "";
      last = event.target;
      update();
    }
  });
  update();
})();
