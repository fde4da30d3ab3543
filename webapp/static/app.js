// Progressive enhancement only: every page works without JavaScript.
(function () {
  "use strict";

  // Upload form: drag and drop onto the zone, and list what was chosen.
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  const chosen = document.getElementById("chosen");
  function showChosen() {
    if (!chosen || !input) return;
    const names = Array.from(input.files).map((f) => f.name);
    const count = names.length === 1 ? "1 file" : names.length + " files";
    chosen.textContent = names.length ? count + ": " + names.join(", ") : "";
  }
  if (zone && input) {
    input.addEventListener("change", showChosen);
    ["dragenter", "dragover"].forEach((name) =>
      zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((name) =>
      zone.addEventListener(name, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      input.files = event.dataTransfer.files;
      showChosen();
    });
  }

  // Forms that destroy something ask first: confirm.js, loaded before the page is shown.

  // Upload progress page: poll the API until every image is indexed or failed.
  const table = document.getElementById("progress");
  const note = document.getElementById("progress-note");
  if (table && table.dataset.ids) {
    const url = table.dataset.api + "?ids=" + encodeURIComponent(table.dataset.ids);
    const poll = () => {
      fetch(url, { headers: { Accept: "application/json" } })
        .then((response) => response.json())
        .then((data) => {
          let waiting = 0;
          data.images.forEach((image) => {
            const row = table.querySelector('tr[data-id="' + image.image_id + '"]');
            if (!row) return;
            const cell = row.querySelector(".status");
            cell.className = "status status-" + image.status;
            cell.textContent = image.status + (image.error ? ": " + image.error : "");
            if (image.status === "indexed" && !row.querySelector("img")) {
              const img = document.createElement("img");
              img.src = image.thumbnail_url;
              img.width = 64;
              img.alt = "";
              row.cells[0].appendChild(img);
            }
            if (image.status === "queued" || image.status === "registered") waiting += 1;
          });
          note.textContent = waiting ? waiting + " still being indexed…" : "All done.";
          if (waiting) setTimeout(poll, 1000);
        })
        .catch(() => { note.textContent = "Lost contact with the server; retrying…"; setTimeout(poll, 3000); });
    };
    poll();
  }
  // Search page: a picture dropped or pasted on the search box searches by example, through
  // the same form as "Find pictures like one of yours" (which works without JavaScript).
  const searchForm = document.getElementById("search-form");
  const byImage = document.getElementById("by-image");
  // The server keeps only an example's embedding, so the tab keeps a small copy of the
  // picture under the SHA-256 the server names the example by, for the example's chip.
  const exampleKey = (hex) => "clipseek-example-" + hex;
  const rememberExample = (file) => {
    if (!file || !window.crypto || !crypto.subtle || !window.createImageBitmap) return Promise.resolve();
    return file.arrayBuffer()
      .then((bytes) => Promise.all([crypto.subtle.digest("SHA-256", bytes), createImageBitmap(file)]))
      .then(([digest, bitmap]) => {
        const hex = Array.from(new Uint8Array(digest)).map((b) => b.toString(16).padStart(2, "0")).join("");
        const scale = 96 / Math.max(bitmap.width, bitmap.height, 1);
        const canvas = document.createElement("canvas");
        canvas.width = Math.max(1, Math.round(bitmap.width * scale));
        canvas.height = Math.max(1, Math.round(bitmap.height * scale));
        canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
        sessionStorage.setItem(exampleKey(hex), canvas.toDataURL("image/jpeg", 0.8));
      })
      .catch(() => {});  // without a copy the chip just shows no thumbnail
  };
  document.querySelectorAll("img[data-example]").forEach((img) => {
    const copy = sessionStorage.getItem(exampleKey(img.dataset.example));
    if (copy) { img.src = copy; img.hidden = false; }
  });
  if (byImage) {
    byImage.addEventListener("submit", (event) => {
      const file = byImage.querySelector('input[type="file"]');
      if (!file || !file.files.length) return;
      event.preventDefault();
      rememberExample(file.files[0]).then(() => byImage.submit());
    });
  }
  if (searchForm && byImage) {
    const fileInput = byImage.querySelector('input[type="file"]');
    const sendPicture = (files) => {
      const pictures = Array.from(files || []).filter((f) => f.type.startsWith("image/"));
      if (!pictures.length || !fileInput) return false;
      const chosenFiles = new DataTransfer();
      chosenFiles.items.add(pictures[0]);
      fileInput.files = chosenFiles.files;
      rememberExample(pictures[0]).then(() => byImage.submit());
      return true;
    };
    ["dragenter", "dragover"].forEach((name) =>
      searchForm.addEventListener(name, (event) => { event.preventDefault(); searchForm.classList.add("over"); }));
    searchForm.addEventListener("dragleave", () => searchForm.classList.remove("over"));
    searchForm.addEventListener("drop", (event) => {
      event.preventDefault();
      searchForm.classList.remove("over");
      sendPicture(event.dataTransfer.files);
    });
    searchForm.addEventListener("paste", (event) => {
      if (sendPicture(event.clipboardData && event.clipboardData.files)) event.preventDefault();
    });
  }
})();
