// The opened row: prompt, final answer, and every round with word diffs against its A, votes and points.
// Model text only ever reaches the page through textContent / text nodes, never as markup.
var HadronRow = (function () {
  "use strict";
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
  // Fill the opened row's body ``b`` from its index entry ``r`` and its details ``D``.
  function build(b, r, D) {
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

  return { el: el, add: add, fmt: fmt, num: num, plural: plural, build: build };
})();
