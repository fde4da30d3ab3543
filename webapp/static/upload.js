// Upload page: any number of files sent in parts the server accepts, one part after the
// other, with a progress bar and a summary that follows the indexing. The list of files is
// kept in the tab before the first byte leaves, so that leaving the page (which asks first)
// or a reload loses no file's outcome. Without JavaScript the form posts as before.
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
  // Kept in this tab's session storage, so that a reload at any moment finds every file again.
  const STORE = "clipseek-upload:" + location.pathname;
  const FINAL = ["indexed", "failed", "rejected", "duplicate", "interrupted"];
  // One entry per file: {name, size, state, sha256, image_id, message, looks_like, retryable}.
  // state: "waiting" (not sent yet), "sending" (its part is on the way), "interrupted" (the page
  // was left before the server answered for it), or what the server said of it.
  let entries = [];
  let inFlight = false;
  let resumed = false;  // whether this list is one the page was left in the middle of
  let polling = false;
  const resumedNote = document.getElementById("upload-resumed");
  const dismissButton = document.getElementById("upload-dismiss");

  if (folderInput) folderInput.closest(".folder-pick").hidden = false;

  const save = () => {
    try {
      sessionStorage.setItem(STORE, JSON.stringify({ resumed: resumed, entries: entries }));
    } catch (e) { /* storage full or turned off: the page still shows this upload */ }
  };
  const mb = (n) => (n / 1048576).toFixed(1) + " MB";
  const files = (n) => n + (n === 1 ? " file" : " files");

  function outcomeText(entry) {
    const alike = entry.looks_like ? "; looks like image " + entry.looks_like + ", already in the collection" : "";
    return stateText(entry) + alike;
  }

  function stateText(entry) {
    if (entry.state === "indexed") return "indexed";
    if (entry.state === "failed") return "failed: " + (entry.message || "");
    if (entry.state === "rejected") return "refused: " + entry.message;
    if (entry.state === "duplicate") return "duplicate: " + entry.message + " (image " + entry.image_id + ")";
    if (entry.state === "interrupted") return entry.message;
    if (entry.state === "waiting") return "waiting to be sent";
    if (entry.state === "sending") return "being sent";
    return "stored; still working (" + entry.state + ")";
  }

  function render() {
    summary.hidden = entries.length === 0;
    const counts = { indexed: 0, failed: 0, rejected: 0, duplicate: 0, interrupted: 0, working: 0 };
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
    dismissButton.hidden = inFlight || entries.length === 0;
    resumedNote.hidden = !resumed;
    if (resumed) {
      const stored = entries.filter((e) => e.image_id).length;
      resumedNote.textContent = "This page was left while an upload was under way. " + (counts.interrupted
        ? stored + " of its " + files(entries.length) + " reached the library; " + files(counts.interrupted) +
          (counts.interrupted === 1 ? " was" : " were") + " not sent or cut off on the way: choose " +
          (counts.interrupted === 1 ? "it" : "them") + " again. After a reload a browser cannot read " +
          "the files it was given before."
        : "The server answered for every one of its " + files(entries.length) + ".");
    }
  }

  // Leaving the page ends the upload: ask first while a part is on its way or still to go.
  window.addEventListener("beforeunload", (event) => {
    if (!inFlight) return;
    event.preventDefault();
    event.returnValue = "";
  });

  // The file's SHA-256 in hex, so that after a reload the server can say whether it arrived;
  // null where the browser has no Web Crypto (an address that is neither HTTPS nor this machine).
  async function checksum(file) {
    if (!window.crypto || !crypto.subtle) return null;
    try {
      const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
      return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
    } catch (e) { return null; }
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
      xhr.addEventListener("error", () => {
        const lost = new Error("the connection to the server was lost");
        lost.lost = true;
        reject(lost);
      });
      xhr.send(data);
    });
  }

  async function upload(chosen) {
    const collection = form.querySelector('input[name="collection"]').value;
    const list = parts(chosen);
    const total = chosen.reduce((sum, f) => sum + (f.size > maxFileBytes ? 0 : f.size), 0);
    // In the order of the server's answer for each part: the files left out first.
    const pending = list.map((part) => part.tooLarge.concat(part.files)
      .map((f) => ({ name: f.name, size: f.size, state: "waiting" })));
    entries = [].concat(...pending);
    resumed = false;
    inFlight = true;
    save();  // every file is listed before the first byte leaves
    bar.hidden = sentNote.hidden = false;
    bar.value = 0;
    sentNote.textContent = mb(0) + " of " + mb(total) + " sent";
    render();
    let sent = 0;
    for (let i = 0; i < list.length; i += 1) {
      const part = list[i];
      const group = pending[i];
      // One file at a time, so that only one is held in memory while it is hashed.
      for (let n = 0; n < part.files.length; n += 1) {
        group[part.tooLarge.length + n].sha256 = await checksum(part.files[n]);
      }
      group.forEach((entry) => { entry.state = "sending"; });
      save();
      render();
      try {
        const outcomes = await sendPart(part, collection, sent, total);
        outcomes.forEach((o, n) => {
          const entry = group[n] || {};
          Object.assign(entry, { name: o.filename, image_id: o.image_id, message: o.message,
                                 looks_like: o.looks_like, state: o.state === "registered" ? "queued" : o.state });
        });
      } catch (error) {
        if (error.lost) await confirmArrived(group, error.message + " while it was sent");
        else group.forEach((entry) => Object.assign(entry, { state: "rejected", message: error.message }));
      }
      sent += part.bytes;
      save();
      render();
    }
    inFlight = false;
    save();
    render();
    bar.value = 1;
    sentNote.textContent = mb(total) + " sent";
    refreshRefused();
    poll();
  }

  // The server's list of recently refused files, read again from this page's own address.
  function refreshRefused() {
    const section = document.getElementById("recent-rejections");
    fetch(location.pathname, { headers: { Accept: "text/html" } })
      .then((response) => response.text())
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("recent-rejections");
        if (section && fresh) section.replaceWith(document.adoptNode(fresh));
      })
      .catch(() => { /* the list as it was; a reload shows the new one */ });
  }

  // Ask the server, by checksum, which of these files (on their way when the answer was lost)
  // arrived; the others are to be chosen again, and `why` says what cut them off.
  function confirmArrived(cut, why) {
    const sums = Array.from(new Set(cut.filter((e) => e.sha256).map((e) => e.sha256)));
    const chunks = [];
    for (let i = 0; i < sums.length; i += 400) chunks.push(sums.slice(i, i + 400));
    return Promise.all(chunks.map((chunk) =>
      fetch(form.dataset.images + "?sha256=" + chunk.join(","), { headers: { Accept: "application/json" } })
        .then((response) => response.json())))
      .catch(() => [])
      .then((answers) => {
        const bySum = {};
        answers.forEach((a) => (a.images || []).forEach((image) => { bySum[image.sha256] = image; }));
        cut.forEach((entry) => {
          const image = entry.sha256 ? bySum[entry.sha256] : null;
          Object.assign(entry, image
            ? { state: image.status, image_id: image.image_id, message: image.error, retryable: image.retryable }
            : { state: "interrupted", message: "not stored: " + why + "; choose it again" });
        });
      });
  }

  // After the page was left during an upload: those on their way are confirmed with the
  // server, and those never sent are to be chosen again.
  function resume() {
    const waiting = entries.filter((e) => e.state === "waiting");
    const sending = entries.filter((e) => e.state === "sending");
    if (!waiting.length && !sending.length) return Promise.resolve();
    resumed = true;
    waiting.forEach((entry) => Object.assign(entry, { state: "interrupted", message: "not sent: choose it again" }));
    return confirmArrived(sending, "it was on its way when the page was left");
  }

  // Follow the images' statuses until none is still working (several ids per request).
  function poll() {
    if (polling) return;
    const waiting = entries.filter((e) => e.image_id && !FINAL.includes(e.state));
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
    const chosen = Array.from(filesInput.files).concat(folderInput ? Array.from(folderInput.files) : []);
    if (!chosen.length) return;  // the server says what to choose
    event.preventDefault();
    if (inFlight) return;  // one upload at a time: its list is the one kept
    filesInput.value = "";
    if (folderInput) folderInput.value = "";
    filesInput.dispatchEvent(new Event("change"));  // the list of chosen files empties too
    upload(chosen);
  });

  dismissButton.addEventListener("click", () => {
    entries = [];
    resumed = false;
    try { sessionStorage.removeItem(STORE); } catch (e) { /* nothing kept */ }
    render();
  });

  let kept = null;
  try { kept = JSON.parse(sessionStorage.getItem(STORE) || "null"); } catch (e) { kept = null; }
  if (kept && Array.isArray(kept.entries)) {
    entries = kept.entries;
    resumed = Boolean(kept.resumed);
  }
  bar.hidden = sentNote.hidden = true;
  render();
  resume().then(() => { save(); render(); poll(); });
})();
