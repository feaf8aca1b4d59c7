// The simulator keypad: a key button adds its key to the keys field (typing works without this).
(function () {
  "use strict";
  var field = document.getElementById("keys");
  if (!field) { return; }
  document.querySelectorAll(".keypad .key").forEach(function (button) {
    button.addEventListener("click", function () {
      field.value += button.dataset.key;
      field.focus();
    });
  });
})();
