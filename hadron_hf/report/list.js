// The row list: filter, search, sort and page the index, and build the DOM of the visible page only.
(function () {
  "use strict";
  var Row = HadronRow, el = Row.el, add = Row.add, fmt = Row.fmt, num = Row.num, plural = Row.plural;
  var body = document.body;
  window.addEventListener("error", function (e) { body.setAttribute("data-js-error", String(e.message)); });
  function $(id) { return document.getElementById(id); }

  var META = JSON.parse($("rows-meta").textContent);
  var IDX = JSON.parse($("rows-index").textContent);
  var S = { q: "", col: null, sort: "i", dir: 1, page: 0, size: 50 };
  var view = IDX, hay = null, box = $("rows");
  // Each row's details follow this script in the file; until the parser reaches them, wait.
  var domReady = document.readyState !== "loading", waiting = [];
  document.addEventListener("DOMContentLoaded", function () {
    domReady = true;
    waiting.splice(0).forEach(function (f) { f(); });
  });
  function later(f) { if (domReady) f(); else waiting.push(f); }
  function detail(i) { var s = $("d-" + i); return s ? JSON.parse(s.textContent) : null; }

  // ---- filter, search, sort, page ----
  var sel = { s: $("f-status"), q: $("f-quality"), c: $("f-conv"), src: $("f-src") };
  var fx = Array.prototype.slice.call(document.querySelectorAll("select.fx"));
  function keep(r) {
    if (sel.s.value && r.s !== sel.s.value) return false;
    if (sel.q.value && r.q !== sel.q.value) return false;
    if (sel.c.value && (r.s !== "ok" || String(r.c) !== sel.c.value)) return false;
    if (sel.src.value && (r.s !== "ok" || r.src !== sel.src.value)) return false;
    for (var k = 0; k < fx.length; k++) {
      var v = fx[k].value;  // "=value" so that an empty value differs from "all"
      if (v && r.x[META.extra.indexOf(fx[k].dataset.col)] !== v.slice(1)) return false;
    }
    if (S.col && r.x[META.extra.indexOf(S.col[0])].toLowerCase().indexOf(S.col[1]) < 0) return false;
    return !S.q || hay[r.i].indexOf(S.q) >= 0;
  }
  // The search text needs every row's details parsed: built in small slices once the page is idle,
  // and finished at once if a search comes first.
  var hayDone = 0, hayAll = [];
  function buildHay(limit) {
    var stop = Math.min(IDX.length, limit === undefined ? IDX.length : hayDone + limit);
    for (; hayDone < stop; hayDone++) hayAll.push(rowHay(IDX[hayDone]));
    if (hayDone === IDX.length) hay = hayAll;
  }
  function idleHay() { if (hay) return; buildHay(400); if (!hay) setTimeout(idleHay, 30); }
  function rowHay(r) {
    var d = detail(r.i), parts = [r.p, r.e, r.x.join("\n")];
    if (d) {
      parts.push(d.p, d.e);
      if (d.d !== undefined && d.d !== null) parts.push(d.t[d.d]);
      if (d.r !== undefined && d.r !== null) parts.push(d.t[d.r]);
      d.x.forEach(function (kv) { parts.push(kv[1]); });
    }
    return parts.join("\n").toLowerCase();
  }
  var KEYS = {
    i: function (r) { return r.i; }, m: function (r) { return r.m; },
    n: function (r) { return r.s === "ok" ? r.n : null; }, L: function (r) { return r.s === "ok" ? r.L : null; }
  };
  function compare(a, b) {
    var f = KEYS[S.sort], x = f(a), y = f(b);
    if (x === y) return a.i - b.i;
    if (x === null || x === undefined) return 1;  // rows without a value sort last either way
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * S.dir;
  }
  function apply(keepPage) {
    view = IDX.filter(keep);
    if (S.sort !== "i" || S.dir !== 1) view.sort(compare);
    if (!keepPage) S.page = 0;
    render();
  }
  function pages() { return Math.max(1, Math.ceil(view.length / S.size)); }
  function render() {
    S.page = Math.max(0, Math.min(S.page, pages() - 1));
    box.textContent = "";
    var start = S.page * S.size, end = Math.min(view.length, start + S.size);
    var frag = document.createDocumentFragment();
    for (var k = start; k < end; k++) frag.appendChild(rowEl(view[k]));
    if (!view.length) frag.appendChild(el("div", "empty", "No rows match the search and filters."));
    box.appendChild(frag);
    $("page").textContent = "page " + fmt(S.page + 1) + " of " + fmt(pages());
    $("shown").textContent = (view.length ? fmt(start + 1) + "–" + fmt(end) + " of " : "") + plural(view.length, "row") +
      (view.length !== IDX.length ? " (" + fmt(IDX.length) + " in all)" : "");
    $("first").disabled = $("prev").disabled = $("prev2").disabled = S.page === 0;
    $("next").disabled = $("last").disabled = $("next2").disabled = S.page >= pages() - 1;
    document.querySelectorAll(".lhead button.h").forEach(function (b) {
      b.setAttribute("aria-sort", b.dataset.sort !== S.sort ? "none" : S.dir > 0 ? "ascending" : "descending");
    });
  }

  // ---- the collapsed line ----
  var QUALITY = {
    undecided: ["undecided", "warn", "a round was short of quorum: A was kept and it did not count toward convergence"],
    fail_safe: ["fail-safe", "bad", "a round had too few counted votes: A was kept with zero scores"]
  };
  var FLAG = {
    1: ["fs", "fail-safe: too few counted votes, A kept"], 2: ["un", "undecided: short of quorum, A kept"],
    3: ["nf", "no flaws: the critic found nothing to fix, A kept without judging"]
  };
  function step(into, r, k) {
    var f = FLAG[r.u[k]], w = r.w[k];
    var s = add(into, el("span", "step w-" + w + (f ? " " + f[0] : ""), w));
    s.title = "round " + (k + 1) + ": " + (f ? f[1] : w === "A" ? "A kept (the incumbent won)" : w + " won");
  }
  function path(into, r) {
    var n = r.w.length, shown = [];
    for (var k = 0; k < n; k++) if (n <= 6 || k < 2 || k >= n - 3) shown.push(k);
    shown.forEach(function (k, j) {
      if (j) add(into, el("span", "arrow", k - shown[j - 1] > 1 ? " → … → " : " → "));
      step(into, r, k);
    });
    into.title = "round winners: " + r.w.join(" → ");
    if (r.s === "ok") add(into, el("span", r.c ? "conv" : "capped", " " + (r.c ? "converged" : "not converged")));
  }
  function rowEl(r) {
    var d = el("details", "row");
    d.id = "row-" + r.i;
    d.dataset.status = r.s;
    d.dataset.quality = r.q;
    var s = add(d, el("summary"));
    add(s, el("span", "c-i", "#" + r.i));
    var st = add(s, el("span", "c-st"));
    add(st, el("span", "badge " + (r.s === "ok" ? "ok" : "error"), r.s));
    if (QUALITY[r.q]) add(st, el("span", "badge " + QUALITY[r.q][1], QUALITY[r.q][0])).title = QUALITY[r.q][2];
    path(add(s, el("span", "c-w")), r);
    add(s, el("span", "c-m", r.m === null ? "–" : num(r.m))).title = "Borda margin of the preference pair";
    add(s, el("span", "c-n", r.s === "ok" ? r.n : "–")).title = "rounds played";
    add(s, el("span", "c-L", r.s === "ok" ? fmt(r.L) : "–")).title =
      "final answer " + fmt(r.L) + " characters, draft " + fmt(r.D);
    var p = add(s, el("span", "c-p"));
    if (r.e) add(p, el("span", "errtxt", "error: " + r.e + " · "));
    META.extra.slice(0, 3).forEach(function (name, k) {
      if (!r.x[k]) return;
      add(p, el("span", "chip", r.x[k].slice(0, 32))).title = name + ": " + r.x[k];
      add(p, document.createTextNode(" "));
    });
    add(p, document.createTextNode(r.p));
    add(d, el("div", "body"));
    d.addEventListener("toggle", function () {
      if (!d.open) return;
      if (location.hash !== "#" + d.id) history.replaceState(null, "", "#" + d.id);
      var b = d.lastChild;
      later(function () { if (!b.firstChild) Row.build(b, r, detail(r.i)); });
    });
    return d;
  }

  // ---- wiring ----
  function openHash() {
    var m = /^#row-(\d+)$/.exec(location.hash);
    if (!m || +m[1] >= IDX.length) return;
    var r = IDX[+m[1]], k = view.indexOf(r);
    if (k < 0) { resetFilters(); k = view.indexOf(r); }
    if (Math.floor(k / S.size) !== S.page || !$("row-" + r.i)) { S.page = Math.floor(k / S.size); render(); }
    var d = $("row-" + r.i), top = d.getBoundingClientRect().top;
    d.open = true;
    if (top < 0 || top > window.innerHeight - 60) d.scrollIntoView();
  }
  function resetFilters() {
    $("q").value = "";
    S.q = "";
    S.col = null;
    if ($("f-val")) $("f-val").value = "";
    [sel.s, sel.q, sel.c, sel.src].concat(fx).forEach(function (s) { s.value = ""; });
    apply();
  }
  var timer = 0;
  $("q").addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      S.q = $("q").value.trim().toLowerCase();
      if (S.q && !hay) later(function () { if (!hay) buildHay(); apply(); });
      else apply();
    }, 120);
  });
  [sel.s, sel.q, sel.c, sel.src].concat(fx).forEach(function (s) { s.addEventListener("change", function () { apply(); }); });
  // Any input column, whatever its values: "column contains text".
  function columnFilter() {
    var v = $("f-val").value.trim().toLowerCase();
    S.col = v ? [$("f-col").value, v] : null;
    apply();
  }
  if ($("f-col")) {
    $("f-col").addEventListener("change", columnFilter);
    $("f-val").addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(columnFilter, 120); });
  }
  document.querySelectorAll(".lhead button.h").forEach(function (b) {
    b.addEventListener("click", function () {
      var key = b.dataset.sort;
      if (S.sort === key) S.dir = -S.dir; else { S.sort = key; S.dir = key === "i" ? 1 : -1; }
      apply();
    });
  });
  function go(page, scroll) { S.page = page; render(); if (scroll) $("rows").scrollIntoView(); }
  $("first").addEventListener("click", function () { go(0); });
  $("prev").addEventListener("click", function () { go(S.page - 1); });
  $("next").addEventListener("click", function () { go(S.page + 1); });
  $("last").addEventListener("click", function () { go(pages() - 1); });
  $("prev2").addEventListener("click", function () { go(S.page - 1, true); });
  $("next2").addEventListener("click", function () { go(S.page + 1, true); });
  $("size").addEventListener("change", function () { S.size = +$("size").value; go(0); });
  $("expand").addEventListener("click", function () {
    var rows = Array.prototype.slice.call(box.querySelectorAll("details.row")), open = !rows.some(function (d) { return d.open; });
    rows.forEach(function (d) { d.open = open; });
  });
  window.addEventListener("hashchange", openHash);
  apply();
  body.setAttribute("data-rows-ms", performance.now().toFixed(1));
  requestAnimationFrame(function () {
    setTimeout(function () { body.setAttribute("data-first-paint-ms", performance.now().toFixed(1)); }, 0);
  });
  later(function () { openHash(); body.setAttribute("data-ready", "1"); setTimeout(idleHay, 200); });
})();
