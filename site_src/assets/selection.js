// Re-rank models with your own weights, in the browser, from the sub-scores bench computed.
// Everything from the data is inserted with textContent: model names stay text.
(function () {
  function init() {
    var host = document.getElementById("bench-weights");
    var dataEl = document.getElementById("bench-selection-data");
    if (!host || !dataEl || host.dataset.ready) return;
    host.dataset.ready = "1";
    var data = JSON.parse(dataEl.textContent);
    if (!data.profiles.length) return;
    var el = function (tag, text) { var e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
    var profileSel = el("select");
    data.profiles.forEach(function (p, i) { var o = el("option", p.name); o.value = i; profileSel.appendChild(o); });
    var label = el("label", "Start from profile ");
    label.appendChild(profileSel);
    host.appendChild(label);
    var sliders = el("div"); sliders.className = "bench-sliders"; host.appendChild(sliders);
    var table = el("table"); host.appendChild(table);
    var weights = {};

    function build() {
      var p = data.profiles[profileSel.value];
      sliders.textContent = "";
      data.dimensions.forEach(function (d) {
        weights[d] = p.weights[d] || 0;
        var row = el("label"); row.className = "bench-slider";
        var name = el("span", d);
        var input = el("input"); input.type = "range"; input.min = 0; input.max = 1; input.step = 0.05; input.value = weights[d];
        var val = el("output", weights[d].toFixed(2));
        input.addEventListener("input", function () { weights[d] = parseFloat(input.value); val.textContent = weights[d].toFixed(2); rank(); });
        row.appendChild(name); row.appendChild(input); row.appendChild(val);
        sliders.appendChild(row);
      });
      rank();
    }

    function rank() {
      var p = data.profiles[profileSel.value];
      var rows = p.models.map(function (m) {
        var num = 0, den = 0;
        data.dimensions.forEach(function (d) {
          var s = m.sub[d];
          if (s !== null && s !== undefined && weights[d] > 0) { num += weights[d] * s; den += weights[d]; }
        });
        return { model: m.model, total: den > 0 ? num / den : null, excluded: m.excluded };
      });
      var ok = rows.filter(function (r) { return !r.excluded.length && r.total !== null; })
                   .sort(function (a, b) { return b.total - a.total; });
      var rest = rows.filter(function (r) { return ok.indexOf(r) < 0; });
      table.textContent = "";
      var head = el("tr");
      ["rank", "model", "score", "note"].forEach(function (h) { head.appendChild(el("th", h)); });
      table.appendChild(head);
      ok.concat(rest).forEach(function (r) {
        var tr = el("tr");
        var i = ok.indexOf(r);
        tr.appendChild(el("td", i >= 0 ? String(i + 1) : "–"));
        tr.appendChild(el("td", r.model));
        tr.appendChild(el("td", r.total === null ? "–" : r.total.toFixed(2)));
        tr.appendChild(el("td", r.excluded.length ? "excluded: " + r.excluded.join("; ") : (r.total === null ? "no data for these weights" : "")));
        table.appendChild(tr);
      });
    }

    profileSel.addEventListener("change", build);
    build();
  }
  if (window.document$ && window.document$.subscribe) { window.document$.subscribe(init); }
  else if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
  else { init(); }
})();
