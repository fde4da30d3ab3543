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
    chosen.textContent = names.length ? names.length + " file(s): " + names.join(", ") : "";
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

  // Forms that destroy something (the image page's Delete) ask first; without JavaScript
  // they submit at once. Here rather than in an onsubmit attribute, which a
  // Content-Security-Policy without 'unsafe-inline' would block.
  document.querySelectorAll("form[data-confirm]").forEach((form) =>
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    }));

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
  if (searchForm && byImage) {
    const fileInput = byImage.querySelector('input[type="file"]');
    const sendPicture = (files) => {
      const pictures = Array.from(files || []).filter((f) => f.type.startsWith("image/"));
      if (!pictures.length || !fileInput) return false;
      const chosenFiles = new DataTransfer();
      chosenFiles.items.add(pictures[0]);
      fileInput.files = chosenFiles.files;
      byImage.submit();
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
