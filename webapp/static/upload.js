// Upload page: any number of files sent in parts the server accepts, one part after the
// other, with a progress bar and a summary that follows the indexing. Without JavaScript
// the form posts as before.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  const summary = document.getElementById("upload-summary");
  if (!form || !summary || !window.XMLHttpRequest) return;
  const filesInput = document.getElementById("file-input");
  const folderInput = document.getElementById("folder-input");
  const bar = document.getElementById("upload-progress");
  const sentNote = document.getElementById("upload-sent");
  const tbody = document.querySelector("#upload-files tbody");
  const retryButton = document.getElementById("retry-failed");
  const maxFiles = Number(form.dataset.maxFiles);
  const maxFileBytes = Number(form.dataset.maxFileBytes);
  const maxPartBytes = Number(form.dataset.maxPartBytes);
  const STORE = "clipseek-upload";
  // One entry per file: {name, state, image_id, message, looks_like}; kept for a reload of the page.
  let entries = [];
  let polling = false;

  if (folderInput) folderInput.closest(".folder-pick").hidden = false;

  const save = () => { try { sessionStorage.setItem(STORE, JSON.stringify(entries)); } catch (e) { /* full or off */ } };
  const mb = (n) => (n / 1048576).toFixed(1) + " MB";

  function outcomeText(entry) {
    const alike = entry.looks_like ? "; looks like image " + entry.looks_like + ", already in the collection" : "";
    return stateText(entry) + alike;
  }

  function stateText(entry) {
    if (entry.state === "indexed") return "indexed";
    if (entry.state === "failed") return "failed: " + (entry.message || "");
    if (entry.state === "rejected") return "rejected: " + entry.message;
    if (entry.state === "duplicate") return "duplicate: " + entry.message + " (image " + entry.image_id + ")";
    if (entry.state === "sending") return "waiting to be sent";
    return "still working (" + entry.state + ")";
  }

  function render() {
    summary.hidden = entries.length === 0;
    const counts = { indexed: 0, failed: 0, rejected: 0, duplicate: 0, working: 0 };
    tbody.textContent = "";
    entries.forEach((entry) => {
      const key = entry.state in counts ? entry.state : "working";
      counts[key] += 1;
      const row = tbody.insertRow();
      row.className = "outcome-" + key;
      if (entry.image_id) row.dataset.id = entry.image_id;
      const name = row.insertCell();
      if (entry.image_id) {
        const link = document.createElement("a");
        link.href = "/image/" + entry.image_id;
        link.textContent = entry.name;
        name.appendChild(link);
      } else {
        name.textContent = entry.name;
      }
      const cell = row.insertCell();
      cell.className = "outcome";
      cell.textContent = outcomeText(entry);
    });
    Object.keys(counts).forEach((key) => { document.getElementById("count-" + key).textContent = counts[key]; });
    document.getElementById("count-alike").textContent = entries.filter((e) => e.looks_like).length;
    retryButton.hidden = !entries.some((e) => e.state === "failed" && e.retryable);
  }

  // Parts of at most maxFiles files and maxPartBytes bytes; files over the per-file limit
  // are not sent, only named, so the server records their rejection.
  function parts(files) {
    const result = [];
    let current = { files: [], bytes: 0, tooLarge: [] };
    files.forEach((file) => {
      if (file.size > maxFileBytes) { current.tooLarge.push(file); return; }
      if (current.files.length >= maxFiles || (current.files.length && current.bytes + file.size > maxPartBytes)) {
        result.push(current);
        current = { files: [], bytes: 0, tooLarge: [] };
      }
      current.files.push(file);
      current.bytes += file.size;
    });
    if (current.files.length || current.tooLarge.length) result.push(current);
    return result;
  }

  function sendPart(part, collection, sentBefore, total) {
    return new Promise((resolve, reject) => {
      const data = new FormData();
      data.append("collection", collection);
      part.files.forEach((file) => data.append("files", file, file.name));
      part.tooLarge.forEach((file) => data.append("too_large", JSON.stringify({ name: file.name, size: file.size })));
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.dataset.api);
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        const done = sentBefore + part.bytes * (event.loaded / event.total);
        bar.value = total ? done / total : 1;
        sentNote.textContent = mb(done) + " of " + mb(total) + " sent";
      });
      xhr.addEventListener("load", () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status === 202 && body) resolve(body.uploads);
        else reject(new Error((body && body.error) || "The server refused this part (HTTP " + xhr.status + ")."));
      });
      xhr.addEventListener("error", () => reject(new Error("The connection to the server was lost.")));
      xhr.send(data);
    });
  }

  async function upload(files) {
    const collection = form.querySelector('input[name="collection"]').value;
    const list = parts(files);
    const total = files.reduce((sum, f) => sum + (f.size > maxFileBytes ? 0 : f.size), 0);
    entries = [];
    bar.hidden = sentNote.hidden = false;
    bar.value = 0;
    const pending = [];
    list.forEach((part) => {
      const names = part.tooLarge.concat(part.files).map((f) => ({ name: f.name, state: "sending" }));
      pending.push(names);
      entries = entries.concat(names);
    });
    render();
    let sent = 0;
    for (let i = 0; i < list.length; i += 1) {
      try {
        const outcomes = await sendPart(list[i], collection, sent, total);
        outcomes.forEach((o, n) => {
          const entry = pending[i][n] || {};
          Object.assign(entry, { name: o.filename, image_id: o.image_id, message: o.message,
                                 looks_like: o.looks_like, state: o.state === "registered" ? "queued" : o.state });
        });
      } catch (error) {
        pending[i].forEach((entry) => Object.assign(entry, { state: "rejected", message: error.message }));
      }
      sent += list[i].bytes;
      save();
      render();
    }
    bar.value = 1;
    sentNote.textContent = mb(total) + " sent";
    poll();
  }

  // Follow the images' statuses until none is still working (several ids per request).
  function poll() {
    if (polling) return;
    const waiting = entries.filter((e) => e.image_id && !["indexed", "failed", "rejected", "duplicate"].includes(e.state));
    if (!waiting.length) return;
    polling = true;
    const ids = Array.from(new Set(waiting.map((e) => e.image_id)));
    const chunks = [];
    for (let i = 0; i < ids.length; i += 400) chunks.push(ids.slice(i, i + 400));
    Promise.all(chunks.map((chunk) =>
      fetch(form.dataset.images + "?ids=" + chunk.join(","), { headers: { Accept: "application/json" } })
        .then((response) => response.json())))
      .then((answers) => {
        const byId = {};
        answers.forEach((a) => a.images.forEach((image) => { byId[image.image_id] = image; }));
        waiting.forEach((entry) => {
          const image = byId[entry.image_id];
          if (!image) { entry.state = "failed"; entry.message = "deleted since"; entry.retryable = false; return; }
          entry.state = image.status;
          if (image.status === "failed") { entry.message = image.error; entry.retryable = image.retryable; }
        });
        save();
        render();
        polling = false;
        setTimeout(poll, 1000);
      })
      .catch(() => { polling = false; setTimeout(poll, 3000); });
  }

  retryButton.addEventListener("click", () => {
    const ids = entries.filter((e) => e.state === "failed" && e.image_id && e.retryable).map((e) => e.image_id);
    fetch(form.dataset.retry, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Requested-With": "XMLHttpRequest", Accept: "application/json" },
      body: JSON.stringify({ ids: ids }),
    }).then((response) => response.json()).then((done) => {
      const queued = new Set(done.queued || []);
      const kept = new Set(done.not_retryable || []);
      entries.forEach((entry) => {
        if (queued.has(entry.image_id)) entry.state = "queued";
        else if (kept.has(entry.image_id)) entry.retryable = false;
      });
      save();
      render();
      poll();
    });
  });

  form.addEventListener("submit", (event) => {
    const files = Array.from(filesInput.files).concat(folderInput ? Array.from(folderInput.files) : []);
    if (!files.length) return;  // the server says what to choose
    event.preventDefault();
    filesInput.value = "";
    if (folderInput) folderInput.value = "";
    upload(files);
  });

  try { entries = JSON.parse(sessionStorage.getItem(STORE) || "[]"); } catch (e) { entries = []; }
  // Files still unsent when the page was left never reached the server: say so.
  entries.forEach((entry) => {
    if (entry.state === "sending") Object.assign(entry, { state: "rejected", message: "the page was left before it was sent; upload it again" });
  });
  bar.hidden = sentNote.hidden = true;
  render();
  poll();
})();
