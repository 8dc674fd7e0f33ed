/* The jobs dashboard updates itself in place: every data-refresh-seconds it fetches
   its live part (?fragment=live, the same escaped HTML the server renders for the
   page) and swaps it in; a chart window link (1 h / 24 h / 7 d) fetches at once.
   A static file, not an inline script: the Content-Security-Policy (SECURE_CSP)
   runs scripts from 'self' or with the response's nonce only. Without JavaScript
   the window links are plain links and the page stays as loaded. */
(function () {
  "use strict";

  var live = document.getElementById("dashboard-live");
  if (!live) {
    return;
  }
  var seconds = Number(live.dataset.refreshSeconds) || 15;
  var chosen = live.dataset.window;
  var timer = null;
  var latest = 0; // only the answer to the latest request is shown

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, seconds * 1000);
  }

  function update() {
    var request = ++latest;
    window.clearTimeout(timer);
    var url = new URL(window.location.href);
    url.searchParams.set("window", chosen);
    url.searchParams.set("fragment", "live");
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("dashboard: HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser()
          .parseFromString(html, "text/html")
          .getElementById("dashboard-live");
        if (fresh && request === latest) {
          live.replaceChildren.apply(live, Array.from(fresh.childNodes));
          live.dataset.window = fresh.dataset.window;
          live.dataset.updatedAt = fresh.dataset.updatedAt;
        }
      })
      .catch(function (error) {
        // A lost connection or a restart: keep what is shown and try again later.
        console.warn(String(error));
      })
      .finally(function () {
        if (request === latest) {
          schedule();
        }
      });
  }

  live.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-window]");
    if (!link) {
      return;
    }
    event.preventDefault();
    chosen = link.dataset.window;
    var address = new URL(window.location.href);
    address.searchParams.set("window", chosen);
    window.history.replaceState(null, "", address);
    update();
  });

  schedule();
})();
