// The viewer: a result card opens large in an overlay, with previous/next (buttons, arrow
// keys, swipe), its captions, the text found in it and its facts, download, "more like
// this", the image page and delete. Without JavaScript each card's link still opens the
// image page.
(function () {
  "use strict";
  const cards = () => Array.from(document.querySelectorAll("[data-viewer-id]"));
  if (!cards().length) return;
  const token = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  const dialog = document.createElement("div");
  dialog.className = "viewer";
  dialog.id = "viewer";
  dialog.hidden = true;
  dialog.setAttribute("role", "dialog");
  dialog.setAttribute("aria-modal", "true");
  dialog.setAttribute("aria-labelledby", "viewer-title");
  dialog.innerHTML =
    '<div class="viewer-bar"><p id="viewer-title" class="viewer-title"></p>' +
    '<button type="button" class="viewer-close" aria-label="Close">×</button></div>' +
    '<div class="viewer-body">' +
    '<button type="button" class="viewer-prev" aria-label="Previous image">‹</button>' +
    '<figure><img alt=""><figcaption></figcaption></figure>' +
    '<button type="button" class="viewer-next" aria-label="Next image">›</button></div>' +
    '<div class="viewer-side"><ul class="viewer-captions"></ul>' +
    '<section class="viewer-text" hidden aria-label="Text found in the picture">' +
    '<p class="viewer-text-label">Text found in the picture</p><p class="viewer-text-lines"></p></section>' +
    '<dl class="viewer-facts"></dl>' +
    '<p class="viewer-actions"><a class="viewer-download" download>Download</a> ' +
    '<a class="viewer-like">More like this</a> <a class="viewer-page">Open the image page</a> ' +
    '<button type="button" class="viewer-delete">Delete</button></p>' +
    '<p class="viewer-album" hidden><select aria-label="Album"></select> ' +
    '<button type="button" class="viewer-album-add">Add to album</button></p>' +
    '<p class="viewer-status" role="status"></p>' +
    '<p class="viewer-error" role="alert"></p></div>';
  document.body.appendChild(dialog);
  const q = (selector) => dialog.querySelector(selector);
  const img = q("figure img");
  let index = -1;
  let opener = null;
  let loading = 0;

  function fact(list, name, value) {
    if (value === null || value === undefined || value === "") return;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }

  function show(at) {
    const all = cards();
    if (!all.length) { close(); return; }
    index = (at + all.length) % all.length;
    const card = all[index];
    const id = card.dataset.viewerId;
    const thumb = card.querySelector("img");
    img.src = "/file/" + id;
    img.alt = thumb ? thumb.alt : "image " + id;
    q("#viewer-title").textContent = "Image " + (index + 1) + " of " + all.length;
    q("figcaption").textContent = "";
    q(".viewer-captions").textContent = "";
    q(".viewer-text-lines").textContent = "";
    q(".viewer-text").hidden = true;
    q(".viewer-facts").textContent = "";
    q(".viewer-error").textContent = "";
    q(".viewer-status").textContent = "";
    q(".viewer-download").href = "/file/" + id;
    q(".viewer-like").href = "/?like=" + id;
    q(".viewer-page").href = "/image/" + id;
    q(".viewer-prev").hidden = q(".viewer-next").hidden = all.length < 2;
    const ticket = ++loading;
    fetch("/api/images/" + id, { headers: { Accept: "application/json" } })
      .then((response) => response.json())
      .then((image) => {
        if (ticket !== loading) return;  // the person has moved on
        q("figcaption").textContent = image.original_name || "";
        if (image.captions && image.captions.length) img.alt = image.captions[0];
        (image.captions || []).forEach((text) => {
          const li = document.createElement("li");
          li.textContent = text;
          q(".viewer-captions").appendChild(li);
        });
        const lines = (image.text_found && image.text_found.lines) || [];
        if (lines.length) {
          // Each line as read, kept apart; textContent, so no markup in a picture reaches the page.
          lines.forEach((line, n) => {
            if (n) q(".viewer-text-lines").appendChild(document.createElement("br"));
            q(".viewer-text-lines").appendChild(document.createTextNode(line));
          });
          q(".viewer-text").hidden = false;
        }
        const facts = q(".viewer-facts");
        fact(facts, "Taken", image.taken_at ? image.taken_at.replace("T", " ") : null);
        fact(facts, "Camera", image.camera);
        if (image.display_width) fact(facts, "Size", image.display_width + " × " + image.display_height + " pixels");
        fact(facts, "Collection", image.collection);
      })
      .catch(() => { q(".viewer-error").textContent = "Could not load this image's details; reload the page."; });
  }

  function open(card) {
    opener = card.querySelector("a") || card;
    dialog.hidden = false;
    document.body.classList.add("viewer-open");
    loadAlbums();
    show(cards().indexOf(card));
    q(".viewer-close").focus();
  }

  function close() {
    dialog.hidden = true;
    document.body.classList.remove("viewer-open");
    img.removeAttribute("src");
    if (opener && document.contains(opener)) opener.focus();
  }

  function focusable() {
    return Array.from(dialog.querySelectorAll("a[href], button")).filter((el) => !el.hidden && el.offsetParent !== null);
  }

  document.addEventListener("click", (event) => {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    const link = event.target.closest("[data-viewer-id] a");
    if (!link) return;
    event.preventDefault();
    open(link.closest("[data-viewer-id]"));
  });
  q(".viewer-close").addEventListener("click", close);
  q(".viewer-prev").addEventListener("click", () => show(index - 1));
  q(".viewer-next").addEventListener("click", () => show(index + 1));
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); close(); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); show(index - 1); }
    else if (event.key === "ArrowRight") { event.preventDefault(); show(index + 1); }
    else if (event.key === "Tab") {
      // Focus stays inside the dialog while it is open.
      const items = focusable();
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
      else if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
    }
  });

  let touchX = null;
  dialog.addEventListener("touchstart", (event) => { touchX = event.changedTouches[0].clientX; }, { passive: true });
  dialog.addEventListener("touchend", (event) => {
    if (touchX === null) return;
    const dx = event.changedTouches[0].clientX - touchX;
    touchX = null;
    if (Math.abs(dx) > 50) show(dx < 0 ? index + 1 : index - 1);
  });

  q(".viewer-delete").addEventListener("click", () => {
    const card = cards()[index];
    const id = card.dataset.viewerId;
    if (!window.confirm("Move this image to the trash? The Trash page restores it until it is emptied.")) return;
    fetch("/api/images/" + id, {
      method: "DELETE",
      headers: { "X-Requested-With": "XMLHttpRequest", "X-CSRF-Token": token, Accept: "application/json" },
    }).then((response) => {
      if (!response.ok) return response.json().then((body) => { throw new Error(body.error); });
      card.remove();
      opener = null;
      if (cards().length) show(index); else close();
      return null;
    }).catch((error) => { q(".viewer-error").textContent = error.message || "The image could not be deleted; reload the page."; });
  });

  // "Add to album": the albums this account may change, asked for once (GET /api/albums).
  const albumBox = q(".viewer-album");
  const albumSelect = albumBox.querySelector("select");
  let albumsAsked = false;
  function loadAlbums() {
    if (albumsAsked) return;
    albumsAsked = true;
    fetch("/api/albums", { headers: { Accept: "application/json" } })
      .then((response) => response.json())
      .then((data) => {
        data.albums.filter((a) => a.may_change).forEach((a) => albumSelect.add(new Option(a.name, a.id)));
        if (data.may_create) albumSelect.add(new Option("a new album…", ""));
        albumBox.hidden = !albumSelect.options.length;
      })
      .catch(() => { albumsAsked = false; });
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "X-Requested-With": "XMLHttpRequest", "X-CSRF-Token": token,
                 "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    }).then((response) => response.json().then((answer) => {
      if (!response.ok) throw new Error(answer.error);
      return answer;
    }));
  }

  q(".viewer-album-add").addEventListener("click", () => {
    const id = Number(cards()[index].dataset.viewerId);
    let album;
    if (albumSelect.value) {
      album = Promise.resolve({ id: albumSelect.value });
    } else {
      const name = window.prompt("The new album's name:");
      if (!name) return;
      album = post("/api/albums", { name: name }).then((made) => {
        albumSelect.add(new Option(made.name, made.id), albumSelect.options.length - 1);
        albumSelect.value = String(made.id);
        return made;
      });
    }
    album.then((chosen) => post("/api/albums/" + chosen.id + "/images", { ids: [id] }))
      .then((answer) => { q(".viewer-status").textContent = answer.message; })
      .catch((error) => { q(".viewer-error").textContent = error.message || "The picture could not be added; reload the page."; });
  });
})();
