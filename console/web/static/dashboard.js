// Refresh today's counts every 10 seconds from the dashboard API (same origin, same session).
(function () {
  "use strict";
  var box = document.getElementById("today");
  if (!box || !window.fetch) { return; }
  function refresh() {
    fetch(box.dataset.api, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        ["placed", "answered", "completed", "failed"].forEach(function (key) {
          var cell = document.getElementById("today-" + key);
          if (cell) { cell.textContent = String(data.today[key]); }
        });
      })
      .catch(function () {});
  }
  window.setInterval(refresh, 10000);
})();
