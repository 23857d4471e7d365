function init(words) {
  document.querySelectorAll("table.sortable").forEach(function (t) {
    var ths = t.querySelectorAll("th");
    ths.forEach(function (th, i) {
      th.addEventListener("click", function () {
        var asc = th.dataset.dir !== "asc", rows = Array.prototype.slice.call(t.tBodies[0].rows);
        ths.forEach(function (h) { delete h.dataset.dir; });
        th.dataset.dir = asc ? "asc" : "desc";
        rows.sort(function (a, b) {
          var x = a.cells[i].dataset.v, y = b.cells[i].dataset.v, nx = parseFloat(x), ny = parseFloat(y);
          var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
          return asc ? c : -c;
        });
        rows.forEach(function (r) { t.tBodies[0].appendChild(r); });
      });
    });
    Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {
      function mark(on) {
        document.querySelectorAll('[data-plot="parallel"] .pl').forEach(function (p) {
          if (p.getAttribute("data-task") === r.dataset.task) { p.classList.toggle("hl", on); }
        });
      }
      r.addEventListener("mouseenter", function () { mark(true); });
      r.addEventListener("mouseleave", function () { mark(false); });
    });
  });
  var filter = document.getElementById("filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean), shown = 0;
      Array.prototype.forEach.call(document.getElementById("tasks").tBodies[0].rows, function (r) {
        var text = r.textContent.toLowerCase();
        var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
        r.style.display = keep ? "" : "none";
        shown += keep ? 1 : 0;
      });
      document.getElementById("shown").textContent = shown + " shown";
    });
    var pre = /^#filter=(.*)$/.exec(location.hash);  // report.html#filter=SOLUSDT opens filtered
    if (words === undefined && pre) { words = decodeURIComponent(pre[1]); }
    if (words) { filter.value = words; filter.dispatchEvent(new Event("input")); }
  }
}
init();
// Served by `batchsweep report --serve`: while the run goes, the page re-reads itself (re-rendered from
// the store) and swaps its content in place, keeping the scroll position and the filter; it stops once the
// run has ended.
function refresh() {
  fetch(location.pathname, {cache: "no-store"}).then(function (r) {
    if (!r.ok) { throw new Error("HTTP " + r.status); }
    return r.text();
  }).then(function (text) {
    var next = new DOMParser().parseFromString(text, "text/html"), f = document.getElementById("filter");
    var words = f ? f.value : undefined;
    document.querySelector("main").innerHTML = next.querySelector("main").innerHTML;
    document.body.dataset.live = next.body.dataset.live;
    document.body.dataset.refreshMs = next.body.dataset.refreshMs;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    init(words);
    schedule();
  }).catch(function () {  // the server went away (Ctrl-C): say so and stop
    var state = document.getElementById("live-state");
    if (state) { state.textContent = "the report server stopped: reload to try again"; }
  });
}
function schedule() {
  if (document.body.dataset.live === "1") {
    setTimeout(refresh, Number(document.body.dataset.refreshMs) || 2000);
  }
}
schedule();
document.body.dataset.ready = "1";
