// Forms and buttons that destroy something ask first (their data-confirm); without
// JavaScript they submit at once. Loaded in <head> and not deferred, so the question is in
// place before any form can be clicked: a deferred listener let a quick click on a page
// just loaded empty the trash without asking. One listener on the document, so forms
// added later ask too. Not an onsubmit attribute, which the Content-Security-Policy
// (no 'unsafe-inline') would block.
(function () {
  "use strict";
  document.addEventListener("submit", (event) => {
    const button = event.submitter;
    const question = (button && button.dataset.confirm) || event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
