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
      var text = r.textContent.toLowerCase(), keep = words.every(function (w) { return text.indexOf(w) >= 0; });
      r.style.display = keep ? "" : "none";
      shown += keep ? 1 : 0;
    });
    document.getElementById("shown").textContent = shown + " shown";
  });
  var pre = /^#filter=(.*)$/.exec(location.hash);  // report.html#filter=SOLUSDT opens filtered
  if (pre) { filter.value = decodeURIComponent(pre[1]); filter.dispatchEvent(new Event("input")); }
}
document.body.dataset.ready = "1";
