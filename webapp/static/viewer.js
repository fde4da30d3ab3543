// The viewer: a result card opens large in an overlay, with previous/next (buttons, arrow
// keys, swipe), its captions, the text found in it and its facts, download, "more like
// this", the image page and delete. Without JavaScript each card's link still opens the
// image page. The open picture is in the address (#view=<id>): opening adds a history
// entry, so Back (a phone's back gesture too) closes the viewer, and a link with it opens
// the viewer. Previous/next go on to the neighbouring page of results (#view=first /
// #view=last there).
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
    '<span><button type="button" class="viewer-full">Full screen</button> ' +
    '<button type="button" class="viewer-close" aria-label="Close">×</button></span></div>' +
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
    '<button type="button" class="viewer-delete" hidden>Delete</button></p>' +
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
  let pushed = false;  // whether opening added the history entry that closing goes back over
  const pagerLink = (rel) => document.querySelector('.pager a[rel="' + rel + '"]');
  const viewHash = (id) => "#view=" + id;
  const hashView = () => (/^#view=(\w+)$/.exec(location.hash) || [])[1] || null;

  // Bytes as the upload page counts them (a megabyte of 1,048,576 bytes).
  function sizeText(bytes) {
    if (typeof bytes !== "number") return null;
    if (bytes < 1048576) return Math.max(1, Math.round(bytes / 1024)) + " KB";
    return (bytes / 1048576).toFixed(1) + " MB";
  }

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
    const beyond = at < 0 ? pagerLink("prev") : at >= all.length ? pagerLink("next") : null;
    if (beyond) {
      // The neighbouring page of results, with the viewer open on its first or last picture.
      location.assign(beyond.href + viewHash(at < 0 ? "last" : "first"));
      return;
    }
    if (at < 0 || at >= all.length) return;
    index = at;
    zoomAt(1, 0, 0);
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
    q(".viewer-prev").hidden = index === 0 && !pagerLink("prev");
    q(".viewer-next").hidden = index === all.length - 1 && !pagerLink("next");
    if (hashView() !== id) history.replaceState(history.state, "", viewHash(id));
    q(".viewer-delete").hidden = true;  // until the server says this account may
    const ticket = ++loading;
    fetch("/api/images/" + id, { headers: { Accept: "application/json" } })
      .then((response) => response.json())
      .then((image) => {
        if (ticket !== loading) return;  // the person has moved on
        q("figcaption").textContent = image.original_name || "";
        q(".viewer-delete").hidden = !(image.may && image.may.delete);
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
        fact(facts, "Place", image.place && image.place.text);
        fact(facts, "Camera", image.camera);
        const pixels = image.display_width ? image.display_width + " × " + image.display_height + " pixels" : null;
        fact(facts, "Size", [pixels, sizeText(image.file_size)].filter(Boolean).join(", "));
        fact(facts, "Collection", image.collection);
      })
      .catch(() => { q(".viewer-error").textContent = "Could not load this image's details; reload the page."; });
  }

  function open(card, fromAddress) {
    opener = card.querySelector("a") || card;
    if (!fromAddress && dialog.hidden) {
      history.pushState({ viewer: true }, "", viewHash(card.dataset.viewerId));
      pushed = true;
    }
    dialog.hidden = false;
    document.body.classList.add("viewer-open");
    loadAlbums();
    show(cards().indexOf(card));
    q(".viewer-close").focus();
  }

  function close() {
    if (pushed) { pushed = false; history.back(); return; }  // popstate hides it
    hide();
    if (hashView()) history.replaceState(history.state, "", location.pathname + location.search);
  }

  function openFromAddress() {
    const wanted = hashView();
    const all = cards();
    const card = wanted === "first" ? all[0] : wanted === "last" ? all[all.length - 1]
      : all.find((c) => c.dataset.viewerId === wanted);
    if (card) open(card, true); else if (!dialog.hidden) hide();
  }

  function hide() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
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
  window.addEventListener("popstate", () => { pushed = false; openFromAddress(); });
  q(".viewer-prev").addEventListener("click", () => show(index - 1));
  q(".viewer-next").addEventListener("click", () => show(index + 1));
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); close(); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); show(index - 1); }
    else if (event.key === "ArrowRight") { event.preventDefault(); show(index + 1); }
    else if (event.key === "+" || event.key === "=") { event.preventDefault(); zoomAt(zoom * 1.5, ...middle()); }
    else if (event.key === "-") { event.preventDefault(); zoomAt(zoom / 1.5, ...middle()); }
    else if (event.key === "Tab") {
      // Focus stays inside the dialog while it is open.
      const items = focusable();
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
      else if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
    }
  });

  // Zoom: the wheel, a pinch, a double click or double tap (and + / - keys) enlarge the
  // picture up to 4× around the pointer; dragging moves it while it is enlarged.
  let zoom = 1;
  let panX = 0;
  let panY = 0;
  function zoomAt(next, x, y) {
    next = Math.min(4, Math.max(1, next));
    const box = img.getBoundingClientRect();
    const factor = next / zoom;
    // The point under the pointer stays where it is.
    panX -= (x - (box.left + box.width / 2)) * (factor - 1);
    panY -= (y - (box.top + box.height / 2)) * (factor - 1);
    zoom = next;
    if (zoom === 1) { panX = 0; panY = 0; }
    img.style.transform = zoom === 1 ? "" : "translate(" + panX + "px, " + panY + "px) scale(" + zoom + ")";
    dialog.classList.toggle("viewer-zoomed", zoom > 1);
  }
  const toggleZoom = (x, y) => zoomAt(zoom > 1 ? 1 : 2.5, x, y);
  const middle = () => { const box = img.getBoundingClientRect(); return [box.left + box.width / 2, box.top + box.height / 2]; };
  let touching = false;  // whether the last pointer on the picture was a finger
  img.addEventListener("dblclick", (event) => {
    // A phone sends dblclick after a double tap as well: that tap has zoomed already (below).
    if (!touching) toggleZoom(event.clientX, event.clientY);
  });
  img.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoomAt(zoom * (event.deltaY < 0 ? 1.25 : 0.8), event.clientX, event.clientY);
  }, { passive: false });
  const pointers = new Map();
  let pinch = null;
  let lastTap = 0;
  // Whether the fingers down now pinch or drag: lifting them is no tap. (Two fingers lifted
  // after a pinch once counted as a double tap and undid the pinch.)
  let gesture = false;
  let downAt = null;
  img.addEventListener("pointerdown", (event) => {
    touching = event.pointerType === "touch";
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    img.setPointerCapture(event.pointerId);
    if (pointers.size === 1) downAt = [event.clientX, event.clientY];
    if (pointers.size === 2) {
      gesture = true;
      const [a, b] = Array.from(pointers.values());
      pinch = { distance: Math.hypot(a[0] - b[0], a[1] - b[1]) || 1, zoom };
    }
  });
  img.addEventListener("pointermove", (event) => {
    const before = pointers.get(event.pointerId);
    if (!before) return;
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    if (downAt && Math.hypot(event.clientX - downAt[0], event.clientY - downAt[1]) > 10) gesture = true;
    if (pinch && pointers.size === 2) {
      const [a, b] = Array.from(pointers.values());
      zoomAt(pinch.zoom * Math.hypot(a[0] - b[0], a[1] - b[1]) / pinch.distance, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
    } else if (zoom > 1) {
      panX += event.clientX - before[0];
      panY += event.clientY - before[1];
      img.style.transform = "translate(" + panX + "px, " + panY + "px) scale(" + zoom + ")";
    }
  });
  const lift = (event) => {
    pointers.delete(event.pointerId);
    if (pointers.size < 2) pinch = null;
    const tapped = !gesture;
    if (!pointers.size) { gesture = false; downAt = null; }
    if (!tapped) { lastTap = 0; return; }
    if (event.type === "pointerup" && event.pointerType === "touch") {
      // A double tap: not every touch browser sends dblclick for one.
      if (event.timeStamp - lastTap < 300) { toggleZoom(event.clientX, event.clientY); lastTap = 0; }
      else lastTap = event.timeStamp;
    }
  };
  img.addEventListener("pointerup", lift);
  img.addEventListener("pointercancel", lift);

  const full = q(".viewer-full");
  full.hidden = !document.fullscreenEnabled;
  full.setAttribute("aria-pressed", "false");
  full.addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else dialog.requestFullscreen().catch(() => {});
  });
  // The button says whether the viewer fills the screen, however it got there or left (Esc).
  document.addEventListener("fullscreenchange", () => {
    full.setAttribute("aria-pressed", String(document.fullscreenElement === dialog));
  });

  let touchX = null;
  dialog.addEventListener("touchstart", (event) => { touchX = event.changedTouches[0].clientX; }, { passive: true });
  dialog.addEventListener("touchend", (event) => {
    if (touchX === null) return;
    if (zoom > 1 || event.touches.length) { touchX = null; return; }  // moving or pinching the picture
    const dx = event.changedTouches[0].clientX - touchX;
    touchX = null;
    if (Math.abs(dx) > 50) show(dx < 0 ? index + 1 : index - 1);
  });

  q(".viewer-delete").addEventListener("click", () => {
    const card = cards()[index];
    const id = card.dataset.viewerId;
    const name = q("figcaption").textContent || "this image";
    if (!window.confirm("Move " + name + " to the trash? The Trash page restores it until it is emptied.")) return;
    fetch("/api/images/" + id, {
      method: "DELETE",
      headers: { "X-Requested-With": "XMLHttpRequest", "X-CSRF-Token": token, Accept: "application/json" },
    }).then((response) => {
      if (!response.ok) return response.json().then((body) => { throw new Error(body.error); });
      card.remove();
      opener = null;
      // The Delete button hides until the next picture's rights are known: keep the focus
      // (and so the keys) inside the viewer.
      if (cards().length) { show(index); q(".viewer-close").focus(); } else close();
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

  openFromAddress();
})();
