// Keeps an open page current: every element marked data-live with data-refresh="N" is
// replaced by its newer self every N seconds, fetched from the same URL. Never while the
// keyboard is in it (a person typing a comment keeps their place), nor while text in it is
// selected, nor while the mouse moves over it (about to click); a pointer resting on the page
// for STILL_MS does not stop it, or a list left under the mouse would never show a new gate.
// Never when the tab is hidden; a page that needs logging in again stops refreshing and says so.
(function () {
  "use strict";
  var STILL_MS = 3000, pointerAt = 0;
  ["pointermove", "pointerdown", "wheel"].forEach(function (type) {
    document.addEventListener(type, function () { pointerAt = Date.now(); }, { passive: true });
  });
  function live() { return Array.prototype.slice.call(document.querySelectorAll("[data-live][data-refresh]")); }
  function selecting(el) {
    var selection = window.getSelection();
    return !!selection && !selection.isCollapsed && selection.rangeCount > 0 &&
      el.contains(selection.getRangeAt(0).commonAncestorContainer);
  }
  function busy(el) {
    var active = document.activeElement;
    if (active && active !== document.body && el.contains(active)) return true;
    if (selecting(el)) return true;
    return el.matches(":hover") && Date.now() - pointerAt < STILL_MS;
  }
  async function refresh() {
    if (document.hidden) return;
    var targets = live().filter(function (el) { return !busy(el); });
    if (!targets.length) return;
    var response;
    try {
      response = await fetch(window.location.href, { credentials: "same-origin" });
    } catch (e) { return; }
    if (response.redirected || response.status === 401) {
      targets.forEach(function (el) { el.setAttribute("data-stale", "logged out"); });
      stopped = true;
      return;
    }
    if (!response.ok) return;
    var doc = new DOMParser().parseFromString(await response.text(), "text/html");
    targets.forEach(function (el) {
      var fresh = el.id && doc.getElementById(el.id);
      if (fresh && !busy(el)) el.replaceWith(document.importNode(fresh, true));
    });
  }
  var timer = null, stopped = false;
  function tick() { refresh().then(schedule, schedule); }
  function schedule() {
    if (timer) clearTimeout(timer);
    timer = null;
    if (stopped) return;
    var seconds = live().map(function (el) { return parseInt(el.getAttribute("data-refresh"), 10) || 0; })
      .filter(function (n) { return n > 0; });
    if (seconds.length) timer = setTimeout(tick, Math.min.apply(null, seconds) * 1000);
  }
  document.addEventListener("DOMContentLoaded", schedule);
})();
