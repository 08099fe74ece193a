// rlcapture report: builds the page from the JSON block in report.html.
// Every value from a recording goes into the page as text (textContent) or as
// an attribute set through the DOM, never as markup.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("rlcapture-data").textContent);
  var app = document.getElementById("app");
  var runs = data.runs;
  var episodes = data.episodes;
  var several = runs.length > 1;
  var hasSeeds = episodes.some(function (e) { return e.seed !== null; });
  // Training rounds (a RecordCallback's step-T/ folders): each episode's round.
  var hasRounds = episodes.some(function (e) { return e.timestep !== null && e.timestep !== undefined; });

  function el(tag, props, children) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) {
        if (k === "text") node.textContent = props[k];
        else if (k === "className") node.className = props[k];
        else if (k === "onclick") node.addEventListener("click", props[k]);
        else node.setAttribute(k, props[k]);
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : v.toFixed(digits === undefined ? 2 : digits);
  }

  function stat(v) { return v === null || v === undefined ? "" : v.toFixed(2); }

  function ci(s) {
    return s.ci_low === null ? "too few episodes" : stat(s.ci_low) + " to " + stat(s.ci_high);
  }

  function pct(v) { return v === null ? "" : Math.round(v * 100) + "%"; }

  function episodeLabel(e) {
    var parts = [];
    if (several) parts.push(runs[e.run].name);
    if (e.seed !== null) parts.push("seed " + e.seed);
    if (hasRounds && e.timestep !== null) parts.push("timestep " + e.timestep);
    parts.push("env " + e.env + " episode " + e.episode);
    return parts.join(" / ");
  }

  function videoId(index) { return "video-" + index; }

  // -- header and summaries -------------------------------------------------
  document.title = "rlcapture report: " + runs.map(function (r) { return r.name; }).join(", ");
  app.appendChild(el("h1", { text: "rlcapture report" }));
  app.appendChild(el("p", { className: "muted", text: runs.map(function (r) { return r.path; }).join(" · ") }));

  app.appendChild(el("h2", { text: "Summary" }));
  var partHead = hasRounds ? (hasSeeds ? "seed / timestep" : "timestep") : "seed";
  var sumHead = ["run", "env", partHead, "episodes", "mean ± std", "95% bootstrap CI", "IQM", "success"];
  var sumBody = el("tbody");
  runs.forEach(function (r) {
    var rows = [{ label: "all", s: r.summary }].concat(
      r.per_seed.map(function (p) { return { label: String(p.seed), s: p }; }),
      (r.per_round || []).map(function (p) { return { label: String(p.timestep), s: p }; }));
    rows.forEach(function (row) {
      var s = row.s;
      var threshold = s.success_threshold === null ? "" : " (return ≥ " + fmt(s.success_threshold) + ")";
      sumBody.appendChild(el("tr", null, [
        el("td", { text: r.name }), el("td", { text: r.env_id || "" }), el("td", { text: row.label }),
        el("td", { className: "num", text: String(s.episodes) }),
        el("td", { className: "num", text: s.episodes ? stat(s.mean) + " ± " + stat(s.std) : "" }),
        el("td", { className: "num", text: s.episodes ? ci(s) : "" }),
        el("td", { className: "num", text: stat(s.iqm) }),
        el("td", { className: "num", text: pct(s.success_rate) + threshold }),
      ]));
    });
  });
  app.appendChild(el("table", { id: "summary" }, [
    el("thead", null, [el("tr", null, sumHead.map(function (h) { return el("th", { text: h }); }))]),
    sumBody,
  ]));
  runs.forEach(function (r) {
    app.appendChild(el("p", { className: "muted", text: r.name + ": " + r.summary.text }));
  });

  // -- learning curves ------------------------------------------------------
  app.appendChild(el("h2", { text: "Learning curve" }));
  runs.forEach(function (r) {
    if (several) app.appendChild(el("h3", { text: r.name }));
    var against = (r.per_round || []).length ? "training timesteps" : "env steps";
    if (r.curve) app.appendChild(el("img", { className: "curve", src: r.curve, alt: "return against " + against + ": " + r.name }));
    else app.appendChild(el("p", { className: "note", text: "no learning curve (no finished episode, or matplotlib is not installed: pip install \"rlcapture[plot]\")" }));
  });

  // -- comparison on shared seeds -------------------------------------------
  function playTogether(videos) {
    return function () {
      videos.forEach(function (v) { v.pause(); v.currentTime = 0; });
      videos.forEach(function (v) {
        var p = v.play();
        if (p && p.catch) p.catch(function () { /* the user can press play */ });
      });
    };
  }

  if (several) {
    app.appendChild(el("h2", { text: "Comparison on shared seeds" }));
    var shared = data.compare || [];
    if (!shared.length) {
      app.appendChild(el("p", { className: "note", text: "the runs share no reset seed" }));
    } else {
      app.appendChild(el("p", { className: "muted", text: shared.length + " reset seeds played by every run; episodes matched by the seed of their reset." }));
      var head = [el("th", { text: "reset seed" })].concat(runs.map(function (r) { return el("th", { className: "num", text: r.name }); }));
      if (runs.length === 2) head.push(el("th", { className: "num", text: "difference" }));
      var body = el("tbody");
      shared.forEach(function (s) {
        var values = s.episodes.map(function (i) { return episodes[i]["return"]; });
        var cells = [el("td", { text: String(s.reset_seed) })].concat(
          values.map(function (v) { return el("td", { className: "num", text: fmt(v) }); }));
        if (runs.length === 2) cells.push(el("td", { className: "num", text: fmt(values[1] - values[0]) }));
        body.appendChild(el("tr", null, cells));
      });
      app.appendChild(el("div", { className: "table-wrap" }, [
        el("table", { id: "compare" }, [el("thead", null, [el("tr", null, head)]), body])]));

      app.appendChild(el("h3", { text: "Side by side" }));
      shared.forEach(function (s) {
        var withVideo = s.episodes.filter(function (i) { return episodes[i].video; });
        if (withVideo.length < 2) return;
        var videos = [];
        var columns = withVideo.map(function (i) {
          var e = episodes[i];
          var v = el("video", { src: e.video, preload: "metadata", muted: "", playsinline: "", controls: "" });
          v.muted = true;
          videos.push(v);
          return el("div", null, [el("div", { text: episodeLabel(e) + ": return " + fmt(e["return"]) }), v]);
        });
        app.appendChild(el("div", { className: "card compare-card" }, [
          el("div", { className: "controls" }, [
            el("strong", { text: "reset seed " + s.reset_seed }),
            el("button", { className: "play-together", type: "button", text: "▶ play together", onclick: playTogether(videos) }),
          ]),
          el("div", { className: "side" }, columns),
        ]));
      });
    }
  }

  // -- every episode --------------------------------------------------------
  app.appendChild(el("h2", { text: "Episodes" }));
  var columns = [];
  if (several) columns.push({ key: "run", label: "run", value: function (e) { return runs[e.run].name; } });
  if (hasSeeds) columns.push({ key: "seed", label: "seed", num: true });
  if (hasRounds) columns.push({ key: "timestep", label: "timestep", num: true });
  columns.push(
    { key: "env", label: "env", num: true },
    { key: "episode", label: "episode", num: true },
    { key: "reset_seed", label: "reset seed", num: true },
    { key: "return", label: "return", num: true },
    { key: "length", label: "length", num: true },
    { key: "end", label: "end" },
    { key: "kept", label: "kept", value: function (e) { return e.kept === null ? "" : e.kept ? "yes" : "no"; } },
    { key: "why", label: "why" },
    { key: "error", label: "error" },
    { key: "video", label: "video", value: function (e) { return e.video ? "▶" : ""; } }
  );
  function cellValue(c, e) { return c.value ? c.value(e) : e[c.key]; }

  var filter = el("input", { type: "search", id: "filter", placeholder: "filter rows (any column, e.g. truncated)", "aria-label": "filter episodes" });
  var count = el("span", { className: "muted", id: "row-count" });
  app.appendChild(el("div", { className: "controls" }, [filter, count]));
  var tbody = el("tbody");
  var rows = episodes.map(function (e, i) {
    var cells = columns.map(function (c) {
      var v = cellValue(c, e);
      var td = el("td", { className: c.num ? "num" : (c.key === "error" ? "error" : "") });
      if (c.key === "video" && e.video) {
        td.appendChild(el("a", { href: "#" + videoId(i), text: "▶" }));
      } else {
        td.textContent = fmt(v);
      }
      return td;
    });
    var tr = el("tr", { "data-index": String(i) }, cells);
    tr._search = columns.map(function (c) { return fmt(cellValue(c, e)); }).join("\u0001").toLowerCase();
    tbody.appendChild(tr);
    return tr;
  });
  var sortState = { key: null, dir: 1 };
  var headCells = columns.map(function (c) {
    var th = el("th", { className: "sortable" + (c.num ? " num" : ""), "data-key": c.key, text: c.label, scope: "col" });
    th.addEventListener("click", function () { sortBy(c, th); });
    return th;
  });
  function compare(a, b, c) {
    var x = cellValue(c, episodes[a]);
    var y = cellValue(c, episodes[b]);
    var xe = x === null || x === undefined || x === "";
    var ye = y === null || y === undefined || y === "";
    if (xe || ye) return xe === ye ? a - b : (xe ? 1 : -1);  // empty cells last either way
    var d = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return d === 0 ? a - b : d * sortState.dir;
  }
  function sortBy(c, th) {
    sortState.dir = sortState.key === c.key ? -sortState.dir : 1;
    sortState.key = c.key;
    headCells.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", sortState.dir > 0 ? "ascending" : "descending");
    var order = rows.map(function (_, i) { return i; }).sort(function (a, b) { return compare(a, b, c); });
    order.forEach(function (i) { tbody.appendChild(rows[i]); });
  }
  function applyFilter() {
    var q = filter.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (tr) {
      var match = !q || tr._search.indexOf(q) !== -1;
      tr.hidden = !match;
      if (match) shown += 1;
    });
    count.textContent = shown + " of " + rows.length + " episodes";
  }
  filter.addEventListener("input", applyFilter);
  app.appendChild(el("div", { className: "table-wrap" }, [
    el("table", { id: "episodes" }, [el("thead", null, [el("tr", null, headCells)]), tbody])]));
  applyFilter();

  // -- every video ----------------------------------------------------------
  app.appendChild(el("h2", { text: "Videos" }));
  var cards = [];
  episodes.forEach(function (e, i) {
    if (!e.video) return;
    var video = el("video", { src: e.video, preload: "metadata", controls: "", muted: "", playsinline: "" });
    video.muted = true;
    var thumbs = el("div", { className: "thumbs" }, e.keyframes.map(function (k) {
      var img = el("img", { src: k.src, alt: "keyframe" + (k.step === null ? "" : " at step " + k.step), loading: "lazy" });
      img.title = k.step === null ? "keyframe" : "step " + k.step;
      img.addEventListener("click", function () {
        if (k.step === null || !isFinite(video.duration) || !e.frames) return;
        video.pause();
        video.currentTime = Math.min(video.duration, (k.step + 0.5) * video.duration / e.frames);
      });
      return img;
    }));
    var caption = episodeLabel(e) + ": return " + fmt(e["return"]) + ", " + fmt(e.length) + " steps, " + e.end +
      (e.kept === null ? "" : e.kept ? " (kept: " + e.why + ")" : "");
    cards.push(el("div", { className: "card", id: videoId(i) }, [el("div", { text: caption }), video, thumbs]));
  });
  if (cards.length) app.appendChild(el("div", { className: "grid", id: "videos" }, cards));
  else app.appendChild(el("p", { className: "note", text: "no recorded videos" }));
})();
