// obshub web UI: small progressive enhancements; every page works without this file.
// - a visible loading state while the next page is being computed (slow queries never look frozen)
// - "/" focuses the query bar, Escape leaves it
"use strict";
(function () {
  var status = document.getElementById("loading");
  function loading() {
    document.body.classList.add("is-loading");
    if (status) status.setAttribute("aria-label", "Loading");
    if (status) status.firstElementChild.textContent = "";
  }
  document.addEventListener("submit", function (ev) {
    if (!ev.defaultPrevented) loading();
  });
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[href]");
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    if (a.hasAttribute("download") || a.target || a.getAttribute("href").charAt(0) === "#") return;
    if (a.origin === location.origin && a.pathname === location.pathname && a.search === location.search) return;
    loading();
  });
  window.addEventListener("pageshow", function () { document.body.classList.remove("is-loading"); });
  document.addEventListener("keydown", function (ev) {
    var t = ev.target, typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
    var q = document.getElementById("q");
    if (ev.key === "/" && !typing && q) { ev.preventDefault(); q.focus(); q.select(); }
    else if (ev.key === "Escape" && t === q) { q.blur(); }
  });
})();
