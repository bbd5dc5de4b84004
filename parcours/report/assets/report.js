/* Draws each chart from its embedded JSON, and exports tables as CSV. No library but ECharts,
   no network: the CSV is a data: URL built in the page. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("report-config").textContent);
  var palette = config.palette;

  function grey(value, n, smallN) {
    if (smallN > 0 && n < smallN) {
      return { value: value, itemStyle: { color: config.small_n_colour }, smallN: true };
    }
    return value;
  }

  function common() {
    return {
      animation: false,
      color: palette,
      aria: { enabled: true, decal: { show: true } },
      tooltip: { trigger: "item" },
      textStyle: { fontFamily: "system-ui, sans-serif" }
    };
  }

  function sankey(data) {
    var option = common();
    option.series = [{
      type: "sankey",
      nodeAlign: "left",
      layoutIterations: 0,
      emphasis: { focus: "adjacency" },
      lineStyle: { color: "source", opacity: 0.35 },
      // the display label travels as `display` (ECharts reserves `label` for styling)
      label: { formatter: function (p) { return p.data.display + " · " + p.data.step; } },
      data: data.nodes.map(function (node) {
        return { name: node.name, display: node.label, step: node.step, depth: node.step - 1,
                 itemStyle: { color: palette[stageIndex(data, node.stage) % palette.length] } };
      }),
      links: data.links.map(function (l) { return { source: l.source, target: l.target, value: l.value }; })
    }];
    return option;
  }

  function stageIndex(data, stage) {
    if (!data._stages) {
      data._stages = [];
      data.nodes.forEach(function (n) { if (data._stages.indexOf(n.stage) < 0) { data._stages.push(n.stage); } });
    }
    return data._stages.indexOf(stage);
  }

  function bar(data) {
    var option = common();
    var category = { type: "category", data: data.labels, inverse: data.horizontal, axisLabel: { width: 180, overflow: "truncate" } };
    var value = { type: "value" };
    option.grid = { left: 20, right: 60, top: 40, bottom: 30, containLabel: true };
    option.legend = { top: 0 };
    option.tooltip = { trigger: "axis", axisPointer: { type: "shadow" } };
    option.xAxis = data.horizontal ? value : category;
    option.yAxis = data.horizontal ? category : value;
    option.series = data.series.map(function (s) {
      return {
        type: "bar", name: s.name, stack: data.stack ? "total" : undefined,
        label: { show: true, position: data.stack ? "inside" : "right" },
        data: s.values.map(function (v, i) { return grey(v, data.n[i], data.small_n); })
      };
    });
    return option;
  }

  function line(data) {
    var option = common();
    option.grid = { left: 20, right: 30, top: 40, bottom: 30, containLabel: true };
    option.legend = { top: 0 };
    option.tooltip = { trigger: "axis" };
    option.xAxis = { type: "category", data: data.x };
    option.yAxis = { type: "value" };
    option.series = data.series.map(function (s) {
      return { type: "line", name: s.name, data: s.values, showSymbol: true, symbol: "circle" };
    });
    return option;
  }

  var builders = { sankey: sankey, bar: bar, line: line };
  document.querySelectorAll("script[data-chart]").forEach(function (element) {
    var id = element.getAttribute("data-chart");
    var data = JSON.parse(element.textContent);
    var chart = echarts.init(document.getElementById("chart-" + id), null, { renderer: "canvas" });
    chart.setOption(builders[data.kind](data));
    window.addEventListener("resize", function () { chart.resize(); });
  });

  function csvCell(text) {
    return /[",\n;]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  document.querySelectorAll("button.csv").forEach(function (button) {
    button.addEventListener("click", function () {
      var table = document.getElementById(button.getAttribute("data-table")).querySelector("table");
      var lines = Array.prototype.map.call(table.rows, function (row) {
        return Array.prototype.map.call(row.cells, function (c) { return csvCell(c.textContent); }).join(",");
      });
      var link = document.createElement("a");
      link.href = "data:text/csv;charset=utf-8," + encodeURIComponent(lines.join("\r\n") + "\r\n");
      link.download = button.getAttribute("data-table") + ".csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
    });
  });
}());
