// obshub web UI: small progressive enhancements; every page works without this file.
// - a visible loading state while the next page is being computed (slow queries never look frozen)
// - "/" focuses the query bar, Escape leaves it; "j"/"k" move through the rows of a list
// - a link to "#row" (trace markers, context) opens that row's details
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
    else if ((ev.key === "j" || ev.key === "k") && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      var rows = Array.prototype.slice.call(document.querySelectorAll("main summary"));
      if (!rows.length) return;
      var i = rows.indexOf(document.activeElement);
      var next = ev.key === "j" ? Math.min(i + 1, rows.length - 1) : Math.max(i - 1, 0);
      ev.preventDefault();
      rows[next].focus();
      rows[next].scrollIntoView({block: "nearest"});
    }
  });
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    var d = el && el.querySelector("details");
    if (d) { d.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
