(function () {
  "use strict";
  // Model text only ever reaches the page through textContent / text nodes, never as markup.
  var body = document.body;
  window.addEventListener("error", function (e) { body.setAttribute("data-js-error", String(e.message)); });
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function add(parent, child) { parent.appendChild(child); return child; }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }
  function num(x) { return Number.isInteger(x) ? String(x) : x.toFixed(2); }
  function pct(x) { return Math.round(100 * x) + "%"; }
  function plural(n, word) { return fmt(n) + " " + word + (n === 1 ? "" : "s"); }

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
      later(function () { if (!b.firstChild) build(b, r); });
    });
    return d;
  }

  // ---- word diff ----
  function words(s) { return (s || "").match(/\s+|\S+\s*/g) || []; }
  function wordDiff(a, b) {
    var x = words(a), y = words(b), p = 0, q = 0;
    while (p < x.length && p < y.length && x[p] === y[p]) p++;
    while (q < x.length - p && q < y.length - p && x[x.length - 1 - q] === y[y.length - 1 - q]) q++;
    var A = x.slice(p, x.length - q), B = y.slice(p, y.length - q), N = A.length, M = B.length, W = M + 1;
    if (N * M > 4e6) return null;  // too long for a readable word diff: shown side by side instead
    var L = new Uint32Array((N + 1) * W), i, j;
    for (i = N - 1; i >= 0; i--) for (j = M - 1; j >= 0; j--)
      L[i * W + j] = A[i] === B[j] ? L[(i + 1) * W + j + 1] + 1 : Math.max(L[(i + 1) * W + j], L[i * W + j + 1]);
    var ops = [], kept = p + q, added = 0, removed = 0;
    function push(op, t) {
      if (op !== "=" && /\S/.test(t)) { if (op === "+") added++; else removed++; }
      var last = ops[ops.length - 1];
      if (last && last[0] === op) last[1] += t; else ops.push([op, t]);
    }
    if (p) push("=", x.slice(0, p).join(""));
    for (i = 0, j = 0; i < N || j < M;) {
      if (i < N && j < M && A[i] === B[j]) { push("=", A[i]); i++; j++; kept++; }
      else if (j >= M || (i < N && L[(i + 1) * W + j] >= L[i * W + j + 1])) push("-", A[i++]);
      else push("+", B[j++]);
    }
    if (q) push("=", x.slice(x.length - q).join(""));
    var most = Math.max(x.length, y.length) || 1;
    return { ops: ops, keptOfA: x.length ? kept / x.length : 1, rewrite: kept / most < 0.4, added: added, removed: removed };
  }
  function diffPre(ops) {
    var pre = el("pre", "diff");
    ops.forEach(function (o) {
      add(pre, o[0] === "=" ? document.createTextNode(o[1]) : el(o[0] === "-" ? "del" : "ins", "", o[1]));
    });
    return pre;
  }
  function sideBySide(leftTitle, left, rightTitle, right) {
    var g = el("div", "sbs");
    [[leftTitle, left], [rightTitle, right]].forEach(function (c) {
      var col = add(g, el("div"));
      add(col, el("h5", "", c[0]));
      add(col, el("pre", "", c[1]));
    });
    return g;
  }
  // A text compared with an earlier one: inline changes when most words survive, else side by side.
  function compared(parent, before, after, beforeName, afterName) {
    var D = wordDiff(before, after), modes = [["diff", "changes vs " + beforeName], ["sbs", "side by side"],
      ["text", "full text"]], out = el("div"), bar = add(parent, el("div", "view"));
    add(parent, out);
    function show(mode) {
      out.textContent = "";
      Array.prototype.forEach.call(bar.children, function (b) { b.setAttribute("aria-pressed", String(b.dataset.mode === mode)); });
      if (mode === "diff" && D) add(out, diffPre(D.ops));
      else if (mode === "text") add(out, el("pre", "", after));
      else add(out, sideBySide(beforeName, before, afterName, after));
    }
    modes.forEach(function (m) {
      if (m[0] === "diff" && !D) return;
      var b = add(bar, el("button", "", m[1]));
      b.type = "button";
      b.dataset.mode = m[0];
      b.addEventListener("click", function () { show(m[0]); });
    });
    show(D && !D.rewrite ? "diff" : "sbs");
    if (!D) return "too long to diff word by word";
    if (before === after) return "identical to " + beforeName;
    return D.rewrite ? "rewritten: " + pct(D.keptOfA) + " of " + beforeName + "'s words kept" :
      "+" + plural(D.added, "word") + " −" + fmt(D.removed) + " vs " + beforeName;
  }

  // ---- the opened row ----
  function h(parent, tag, text, note) {
    var e = add(parent, el(tag, "", text));
    if (note) add(e, el("span", "muted", " " + note));
    return e;
  }
  function fold(parent, cls, label, open) {
    var d = add(parent, el("details", cls));
    add(d, el("summary", "", label));
    d.open = !!open;
    return d;
  }
  function finalNote(rounds, src, converged) {
    if (!rounds.length) return "";
    var k = -1;
    rounds.forEach(function (R, j) { if (R.w !== "A" && !R.fs && !R.un) k = j; });
    var tail = converged ? " It converged." : " It did not converge within " + plural(rounds.length, "round") + ".";
    var decided = rounds.filter(function (R) { return !R.fs && !R.un && !R.nf; }).length;
    if (k < 0) return "The draft: " + (decided === rounds.length ? "A won every round." :
      "A was kept in every round (" + fmt(rounds.length - decided) + " without a judged decision).") + tail;
    var kept = rounds.length - 1 - k;
    return "Written as round " + rounds[k].i + "'s " + src + (kept ? ", then kept for " + plural(kept, "round") : "") +
      "." + tail;
  }
  function build(b, r) {
    var D = detail(r.i);
    if (!D) { add(b, el("p", "muted", "This row's details are missing from the file.")); return; }
    var T = D.t || [];
    h(b, "h3", "Prompt");
    add(b, el("pre", "", D.p));
    if (D.e) { h(b, "h3", "Error"); add(b, el("pre", "err", D.e)); }
    if (D.x.length) {
      h(b, "h3", "Input columns");
      var t = add(b, el("table", "grid"));
      D.x.forEach(function (kv) { var tr = add(t, el("tr")); add(tr, el("th", "", kv[0])); add(tr, el("td", "", kv[1])); });
    }
    if (D.r !== undefined && D.r !== null) {
      h(b, "h3", "Final answer", finalNote(D.R, r.src, r.c));
      add(b, el("pre", "", T[D.r]));
      add(fold(b, "txt", "Draft (the teacher's first answer)"), el("pre", "", T[D.d]));
      var dd = fold(b, "txt", "Draft → final answer, word by word");
      dd.addEventListener("toggle", function () {
        if (dd.open && dd.children.length === 1) compared(dd, T[D.d], T[D.r], "draft", "final");
      });
      h(b, "h3", "Rounds (" + D.R.length + ")");
      D.R.forEach(function (R) { roundEl(b, R, T); });
    }
    usage(b, D);
    reasoning(b, D);
  }
  var ROLE = { A: "A (incumbent)", B: "B (author's rewrite of A, guided by the critique)", AB: "AB (synthesizer)" };
  function roundEl(parent, R, T) {
    var sec = add(parent, el("section", "round won-" + R.w));
    var head = add(sec, el("h4", "", "Round " + R.i + ": " + (R.w === "A" ? "A kept" : R.w + " won") +
      (R.ld !== null ? " by " + plural(R.ld, "Borda point") : "")));
    var flags = [];
    if (R.nf) flags.push(["ok", "no flaws", "the critic found nothing to fix; A kept without judging"]);
    if (R.fs) flags.push(["bad", "fail-safe", "half the panel or fewer gave a counted vote; A kept with zero scores"]);
    if (R.un) flags.push(["warn", "undecided", "short of quorum" + (R.qu ? " (" + R.qu + " counted votes needed)" : "") +
      "; A kept, not counted toward convergence"]);
    if (R.ra) flags.push(["", plural(R.ra, "seat") + " re-asked", "judges asked again after a missing vote"]);
    if (R.vs) flags.push(["", plural(R.vs, "seat") + " skipped", "the winner was settled before these judges voted"]);
    flags.forEach(function (f) { add(head, document.createTextNode(" ")); add(head, el("span", "badge " + f[0], f[1])).title = f[2]; });
    var merge = R.mo.length ? " AB merges A and B, shown to the synthesizer as " +
      R.mo.map(function (c, k) { return "X" + (k + 1) + " = " + c; }).join(", ") +
      " (the order is drawn at random each round, so neither version gets the first position by default)." :
      R.AB !== null ? " AB is the synthesizer's minimal repair of A from the critique (it does not see B)." : "";
    add(sec, el("p", "origin", "A = " + (R.o === "draft" ? "the draft" : R.o) + "." + merge));
    var crit = T[R.C] || "";
    add(fold(sec, "txt", "Critique: " + crit.slice(0, 110).replace(/\s+/g, " ") + (crit.length > 110 ? "…" : "")),
      el("pre", "", crit));
    var A = T[R.A] || "";
    ["A", "B", "AB"].forEach(function (c) {
      if (R[c] === null || R[c] === undefined) return;
      // A fail-safe or undecided round keeps A without a verdict: A is not shown as the round's winner.
      var undecided = R.fs || R.un, win = R.w === c && !R.nf && !undecided;
      var d = add(sec, el("details", "cand" + (win ? " win" : "")));
      var points = R.sc[c] !== undefined && !R.nf && !R.fs ? " · " + plural(R.sc[c], "Borda point") : "";
      var s = add(d, el("summary", "", ROLE[c] + points));
      d.open = win;
      if (c === "A") { add(d, el("pre", "", A)); }
      else add(s, el("span", "muted", " · " + compared(d, A, T[R[c]], "A", c)));
      if (win) add(s, el("span", "", " ★ round winner"));
      else if (undecided && c === "A") add(s, el("span", "muted", " · kept without a verdict"));
    });
    if (R.v.length) votes(sec, R.v);
    if (!R.nf && !R.fs) borda(sec, R);
  }
  function votes(parent, list) {
    var t = add(parent, el("table", "grid votes"));
    var tr = add(t, el("tr"));
    ["judge", "model", "shown to the judge", "ranking, best first", "vote", "raw reply"].forEach(function (c) { add(tr, el("th", "", c)); });
    list.forEach(function (v) {
      var row = add(t, el("tr")), shown = v[2] || [], ranking = v[3] || [];
      add(row, el("td", "num", v[0]));
      add(row, el("td", "", v[1]));
      add(row, el("td", "", shown.map(function (c, k) { return "X" + (k + 1) + "=" + c; }).join(", ")));
      var same = v[4] && ranking.length && ranking.join() === shown.join();
      var rk = add(row, el("td", same ? "pos" : "", ranking.join(" > ") + (same ? " (= shown order)" : "")));
      if (same) rk.title = "this vote ranks the candidates exactly in the order shown: X1 > X2 > X3";
      add(row, el("td", v[4] ? "" : "errtxt", v[4] ? "counted" + (v[5] ? " (constrained)" : "") : "dropped: " + (v[7] || "unparsed")));
      var raw = fold(add(row, el("td")), "txt", "show");
      add(raw, el("pre", "", v[6]));
    });
  }
  function borda(parent, R) {
    var g = add(parent, el("div", "borda")), top = 0;
    ["A", "B", "AB"].forEach(function (c) { top = Math.max(top, R.sc[c] || 0); });
    ["A", "B", "AB"].forEach(function (c) {
      if (R.sc[c] === undefined) return;
      add(g, el("span", "", c));
      var w = add(g, el("span", "bw")), bar = add(w, el("span", "bar" + (c === R.w ? " win" : "")));
      bar.style.width = (top ? 85 * (R.sc[c] || 0) / top : 0) + "%";
      add(w, el("span", "", R.sc[c]));
    });
  }
  function usage(b, D) {
    var u = D.us, p = D.pf, parts = [];
    if (u) parts.push(plural(u.calls || 0, "call") + " (" + fmt(u.cached_calls || 0) + " cached), " + fmt(u.prompt_tokens || 0) +
      " tokens in, " + fmt(u.completion_tokens || 0) + " out" + (u.cost_usd !== null && u.cost_usd !== undefined ? ", $" + u.cost_usd.toFixed(4) : ""));
    if (p && p.margin !== null && p.margin !== undefined)
      parts.push("preference pair: chosen " + num(p.score_chosen) + " vs rejected " + num(p.score_rejected) + " Borda points (margin " + num(p.margin) + ")");
    if (parts.length) add(b, el("p", "muted", parts.join(" · ")));
  }
  function reasoning(b, D) {
    if (!D.rs.length) { add(b, el("p", "muted", plural(D.nc, "call") + "; no reasoning traces captured.")); return; }
    var box = fold(b, "txt", "Reasoning traces (" + D.rs.length + ")");
    D.rs.forEach(function (t) { add(fold(box, "txt", t[0] + ", round " + t[2] + ", " + t[1]), el("pre", "", t[3])); });
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
