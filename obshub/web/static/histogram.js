// Drag across the Search histogram to zoom to those bars (each bar is also a plain link: this
// script only adds the drag). No framework; same-origin file, as the CSP wants.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const svg of document.querySelectorAll("svg.histogram[data-zoom]")) {
    const bars = [...svg.querySelectorAll("a[data-t0]")];
    if (!bars.length) continue;
    const NS = "http://www.w3.org/2000/svg";
    let start = null, box = null, dragged = false;
    const toSvgX = (ev) => {
      const pt = svg.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      return pt.matrixTransform(svg.getScreenCTM().inverse()).x;
    };
    svg.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      start = toSvgX(ev); dragged = false;
    });
    svg.addEventListener("pointermove", (ev) => {
      if (start === null) return;
      const x = toSvgX(ev);
      if (!dragged && Math.abs(x - start) < 4) return;
      dragged = true;
      if (!box) {
        box = document.createElementNS(NS, "rect");
        box.setAttribute("class", "zoombox"); box.setAttribute("y", "8");
        box.setAttribute("height", bars[0].querySelector(".hit").getAttribute("height"));
        svg.appendChild(box);
      }
      box.setAttribute("x", Math.min(x, start)); box.setAttribute("width", Math.abs(x - start));
    });
    const finish = (ev) => {
      if (start === null) return;
      const x0 = Math.min(start, toSvgX(ev)), x1 = Math.max(start, toSvgX(ev));
      start = null;
      if (box) { box.remove(); box = null; }
      if (!dragged) return;
      const hit = bars.filter((a) => {
        const r = a.querySelector(".hit"), x = +r.getAttribute("x"), w = +r.getAttribute("width");
        return x + w >= x0 && x <= x1;
      });
      if (!hit.length) return;
      const url = new URL(hit[0].getAttribute("href"), window.location.href);  // SVG: href is no string
      url.searchParams.set("from", hit[0].dataset.t0);
      url.searchParams.set("to", hit[hit.length - 1].dataset.t1);
      window.location.assign(url.toString());
    };
    svg.addEventListener("pointerup", finish);
    svg.addEventListener("click", (ev) => { if (dragged) { ev.preventDefault(); dragged = false; } }, true);
  }
});
