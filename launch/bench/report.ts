/**
 * The `--html` report of `launch bench`: one self-contained page (Chart.js inlined from node_modules, the data as
 * escaped JSON, no network access) with tables and charts. After every chart is drawn the page sets
 * `document.body.dataset.chartsRendered` to the number of charts, which the tests (headless Chromium) wait for.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { ChartConfiguration } from "chart.js";
import { makeDirs } from "../../shared/io/make-dirs";

/** A table of the report: column names and rows of cells. */
export interface ReportTable {
  columns: string[];
  rows: (string | number | null)[][];
}

/** One chart: a Chart.js configuration (JSON only: no functions) and a caption. */
export interface ReportChart {
  title: string;
  config: ChartConfiguration;
}

/** A section: heading, notes, optional tables and charts. */
export interface ReportSection {
  heading: string;
  notes?: string[];
  tables?: ReportTable[];
  charts?: ReportChart[];
}

/** The whole report. */
export interface Report {
  title: string;
  /** Lines under the title (machine, command, date). */
  notes: string[];
  sections: ReportSection[];
}

/** Number of charts a report draws. */
export function countCharts(report: Report): number {
  return report.sections.reduce((n, s) => n + (s.charts?.length ?? 0), 0);
}

/** The UMD build of Chart.js from node_modules (resolved at report time). */
function chartJsSource(): string {
  const main = require.resolve("chart.js"); // .../chart.js/dist/chart.cjs
  return fs.readFileSync(path.join(path.dirname(main), "chart.umd.js"), "utf8");
}

/** Embeds JSON in a <script> element: `<`, `>`, `&` and the JS line separators escaped, so no data can end it. */
export function jsonForScript(data: unknown): string {
  return JSON.stringify(data)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c);
}

/** Inline script text must not contain `</script` (the HTML parser would end the element there). */
function inlineScript(src: string): string {
  return src.replace(/<\/(script)/gi, "<\\/$1").replace(/<!--/g, "<\\!--");
}

// Runs in the browser: builds the sections from the JSON, draws each chart, then sets the marker.
const PAGE_SCRIPT = `
(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var root = document.getElementById("report");
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function cell(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(+v.toPrecision(4));
    return String(v);
  }
  Chart.defaults.animation = false;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  var pending = [];
  report.sections.forEach(function (s) {
    var sec = el("section");
    sec.appendChild(el("h2", s.heading));
    (s.notes || []).forEach(function (n) { sec.appendChild(el("p", n, "note")); });
    (s.tables || []).forEach(function (t) {
      var table = el("table");
      var tr = el("tr");
      t.columns.forEach(function (c) { tr.appendChild(el("th", c)); });
      table.appendChild(tr);
      t.rows.forEach(function (r) {
        var row = el("tr");
        r.forEach(function (v) { row.appendChild(el("td", cell(v))); });
        table.appendChild(row);
      });
      sec.appendChild(table);
    });
    (s.charts || []).forEach(function (c) {
      var box = el("figure", undefined, "chart");
      box.appendChild(el("figcaption", c.title));
      var holder = el("div", undefined, "canvas-holder");
      var canvas = el("canvas");
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", c.title);
      holder.appendChild(canvas);
      box.appendChild(holder);
      sec.appendChild(box);
      pending.push({ canvas: canvas, config: c.config });
    });
    root.appendChild(sec);
  });
  var drawn = 0;
  pending.forEach(function (p) {
    new Chart(p.canvas, p.config);
    drawn++;
  });
  document.body.dataset.chartsRendered = String(drawn);
})();
`;

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
p.note { margin: 4px 0; color: #444; }
table { border-collapse: collapse; margin: 12px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; }
figure.chart { margin: 16px 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.canvas-holder { position: relative; height: 340px; width: 100%; }
`;

/** Renders the report as one HTML page with everything inlined (Chart.js, styles, data); no network access. */
export function renderHtmlReport(report: Report): string {
  const csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";
  return [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${csp}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(report.title)}</title>`,
    `<style>${STYLE}</style>`,
    "</head>",
    "<body>",
    `<h1>${escapeHtml(report.title)}</h1>`,
    ...report.notes.map((n) => `<p class="note">${escapeHtml(n)}</p>`),
    '<main id="report"></main>',
    `<script type="application/json" id="report-data">${jsonForScript(report)}</script>`,
    `<script>${inlineScript(chartJsSource())}</script>`,
    `<script>${PAGE_SCRIPT}</script>`,
    "</body>",
    "</html>",
    "",
  ].join("\n");
}

/** Writes the report to `file` (creating its folder). */
export function writeHtmlReport(file: string, report: Report): void {
  makeDirs(path.dirname(path.resolve(file)));
  fs.writeFileSync(file, renderHtmlReport(report));
}

/** A fixed palette (colour-blind friendly, Okabe-Ito) for datasets. */
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"];

/** The i-th palette colour, with an optional alpha in [0, 1]. */
export function colour(i: number, alpha = 1): string {
  const hex = PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
  if (alpha >= 1) return hex;
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
