// The web page: upload a CSV to POST /forecast and chart predicted vs actual and the error (inline
// SVG, no library) at the shortest horizon, with the last bar's forecast at every horizon; keep a
// live table of GET /predictions (a row per ticker and horizon) and a badge of GET /health.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (selector) => document.querySelector(selector);
let forecast = null;

// FORECASTER_API_TOKEN, when the server is started with one: typed once, kept for this tab only
// (sessionStorage), sent as a bearer token with every request but /health.
const TOKEN_KEY = "forecaster-api-token";

function authorized(options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...options, headers: { ...options.headers, Authorization: `Bearer ${token}` } } : options;
}

function refusal(response) {
  return response.status === 401 ? "the API asks for a token: type it in the API token field" : null;
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function cell(row, value) {
  const td = row.insertCell();
  td.textContent = value === null || value === undefined ? "" : value;
  return td;
}

function number(value, digits = 4) {
  if (value === null) return "–";
  return typeof value === "number" ? value.toFixed(digits) : String(value ?? "");
}

// The widest interval level a record carries, e.g. "95" from lower_95 / upper_95.
function widestLevel(record) {
  const levels = Object.keys(record || {}).filter((k) => k.startsWith("lower_")).map((k) => k.slice(6));
  return levels.sort((a, b) => Number(a) - Number(b)).pop();
}

// The widest interval of a prediction, e.g. "9.9000 – 10.5000 (95 %)"; "" without one.
function interval(prediction) {
  const level = widestLevel(prediction);
  return level ? `${number(prediction[`lower_${level}`])} – ${number(prediction[`upper_${level}`])} (${level} %)` : "";
}

function scale(domain, range) {
  const [d0, d1] = domain;
  const span = d1 - d0 || 1;
  return (value) => range[0] + ((value - d0) / span) * (range[1] - range[0]);
}

function axes(svg, x, y, width, height, pad, yDomain, dates) {
  svg.append(element("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: height - pad.bottom,
    y2: height - pad.bottom }));
  svg.append(element("line", { class: "axis", x1: pad.left, x2: pad.left, y1: pad.top,
    y2: height - pad.bottom }));
  for (let i = 0; i <= 4; i += 1) {
    const value = yDomain[0] + ((yDomain[1] - yDomain[0]) * i) / 4;
    svg.append(element("text", { class: "tick", x: pad.left - 6, y: y(value) + 4, "text-anchor": "end" },
      value.toPrecision(4)));
  }
  const step = Math.max(1, Math.floor(dates.length / 5));
  for (let i = 0; i < dates.length; i += step) {
    svg.append(element("text", { class: "tick", x: x(i), y: height - pad.bottom + 16, "text-anchor": "middle" },
      dates[i]));
  }
}

function path(points) {
  return points.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
}

// Predicted and actual close per target day, with the widest interval of each prediction: the scored
// predictions, then those still waiting for their bar. One horizon's records: a prediction and its
// score share the day it was made (as_of), unique per ticker and horizon.
function drawChart(scores, predictions) {
  const svg = $("#chart");
  svg.replaceChildren();
  const byAsOf = new Map(predictions.map((p) => [p.as_of, p]));
  const scored = new Set(scores.map((s) => s.as_of));
  const last = predictions[predictions.length - 1];
  const level = widestLevel(last);
  $("#band-label").textContent = level ? `${level} % interval` : "interval";
  const pending = predictions.filter((p) => !scored.has(p.as_of));
  const rows = [...scores.map((s) => ({ score: s, prediction: byAsOf.get(s.as_of) })),
    ...pending.map((p) => ({ score: null, prediction: p }))].map(({ score, prediction }) => ({
    day: (score || prediction).target_date, actual: score ? score.actual_close : null,
    predicted: (score || prediction).predicted_close,
    lower: prediction && level ? prediction[`lower_${level}`] : null,
    upper: prediction && level ? prediction[`upper_${level}`] : null }));
  const days = rows.map((r) => r.day);
  const values = rows.flatMap((r) => [r.actual, r.predicted, r.lower, r.upper]).filter((v) => v !== null);
  const { width, height } = svg.getBoundingClientRect();
  const pad = { left: 60, right: 40, top: 10, bottom: 24 };
  const yDomain = [values.reduce((a, b) => Math.min(a, b)), values.reduce((a, b) => Math.max(a, b))];
  const x = scale([0, Math.max(1, rows.length - 1)], [pad.left, width - pad.right]);
  const y = scale(yDomain, [height - pad.bottom, pad.top]);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  axes(svg, x, y, width, height, pad, yDomain, days);
  const banded = rows.map((r, i) => [i, r]).filter(([, r]) => r.lower !== null && r.upper !== null);
  if (banded.length) {
    const upper = banded.map(([i, r]) => [x(i), y(r.upper)]);
    const lower = banded.map(([i, r]) => [x(i), y(r.lower)]).reverse();
    svg.append(element("path", { class: "band", d: `${path(upper)}L${path(lower).slice(1)}Z` }));
  }
  const actual = rows.map((r, i) => [i, r]).filter(([, r]) => r.actual !== null);
  svg.append(element("path", { class: "actual", d: path(actual.map(([i, r]) => [x(i), y(r.actual)])) }));
  svg.append(element("path", { class: "predicted", d: path(rows.map((r, i) => [x(i), y(r.predicted)])) }));
  svg.dataset.points = String(rows.length);
}

function drawErrors(scores) {
  const svg = $("#errors");
  svg.replaceChildren();
  const { width, height } = svg.getBoundingClientRect();
  const pad = { left: 60, right: 40, top: 10, bottom: 24 };
  const errors = scores.map((s) => s.error);
  const bound = errors.reduce((a, b) => Math.max(a, Math.abs(b)), 1e-9);
  const x = scale([0, Math.max(1, errors.length - 1)], [pad.left, width - pad.right]);
  const y = scale([-bound, bound], [height - pad.bottom, pad.top]);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  axes(svg, x, y, width, height, pad, [-bound, bound], scores.map((s) => s.target_date));
  const barWidth = Math.max(1, (width - pad.left - pad.right) / Math.max(1, errors.length) - 0.5);
  errors.forEach((error, i) => {
    const top = Math.min(y(error), y(0));
    svg.append(element("rect", { class: error >= 0 ? "bar-pos" : "bar-neg", x: x(i) - barWidth / 2, y: top,
      width: barWidth, height: Math.max(0.5, Math.abs(y(error) - y(0))) }));
  });
  svg.dataset.points = String(errors.length);
}

// One row per metric: the model's value beside naive's (the "naive_" twin) on the same days.
function showMetrics(metrics) {
  const body = $("#metrics tbody");
  body.replaceChildren();
  for (const name of Object.keys(metrics).filter((k) => !k.startsWith("naive_"))) {
    const row = body.insertRow();
    cell(row, name);
    const digits = name === "n" ? 0 : 4;
    cell(row, number(metrics[name], digits));
    cell(row, number(name === "n" ? metrics.n : metrics[`naive_${name}`], digits));
  }
}

// The last bar's prediction at each horizon: how far ahead the forecast goes and how wide it gets.
function showAhead(predictions) {
  const body = $("#ahead tbody");
  body.replaceChildren();
  const lastDay = predictions.length ? predictions[predictions.length - 1].as_of : null;
  for (const p of predictions.filter((q) => q.as_of === lastDay)) {
    const row = body.insertRow();
    row.dataset.horizon = String(p.horizon);
    [p.horizon, p.target_date, number(p.predicted_close), interval(p)].forEach((v) => cell(row, v));
  }
}

// The chart, errors and metrics are the shortest horizon's (the next day's by default).
function showSeries(ticker) {
  const shortest = forecast.horizons[0];
  showMetrics(forecast.metrics.per_ticker[ticker] || {});
  const mine = forecast.predictions.filter((p) => p.ticker === ticker);
  const scores = forecast.scores.filter((s) => s.ticker === ticker && s.horizon === shortest);
  drawChart(scores, mine.filter((p) => p.horizon === shortest));
  drawErrors(scores);
  showAhead(mine);
}

function showForecast(answer) {
  forecast = answer;
  $("#result").hidden = false;
  const model = answer.model;
  const panel = answer.metrics.panel;
  $("#summary").textContent = `${answer.bars} bars of ${answer.tickers.length} ticker(s) from ` +
    `${answer.rows_read} rows, ${answer.dead_letters_total} rejected, ${answer.filtered} of other ` +
    `tickers; model ${model.name} ` +
    `${model.version} (asked for ${model.requested}); ${answer.scores.length} scored predictions; ` +
    `relative MAE over ${panel.tickers} ticker(s) (geometric mean) ${number(panel.relative_mae)}, ` +
    `below naive's on ${panel.tickers_beating_naive}.`;
  $("#model-name").textContent = model.name;
  $("#shown-horizon").textContent = answer.horizons.length > 1 ?
    `Horizons ${answer.horizons.join(", ")}: the chart, errors and metrics below are of horizon ` +
    `${answer.horizons[0]}, the shortest.` : "";
  const series = $("#series");
  series.replaceChildren(...answer.tickers.map((t) => new Option(t, t)));
  $("#ticker-choice").hidden = answer.tickers.length < 2;
  showSeries(answer.tickers[0]);
  const listed = answer.dead_letters.length;
  $("#rejected-count").textContent = listed < answer.dead_letters_total ?
    `${answer.dead_letters_total} (the first ${listed} listed)` : String(listed);
  const body = $("#rejected tbody");
  body.replaceChildren();
  for (const letter of answer.dead_letters) {
    const row = body.insertRow();
    [letter.source, letter.reason, letter.detail, letter.raw].forEach((v) => cell(row, v));
  }
}

function describeError(status, body) {
  const detail = body && body.detail;
  if (!detail) return `HTTP ${status}`;
  if (typeof detail === "string") return detail;
  const rows = (detail.dead_letters || []).slice(0, 10).map((d) => `${d.source}: ${d.reason}: ${d.detail}`);
  return [detail.message || JSON.stringify(detail), ...rows].join("\n");
}

async function submit(event) {
  event.preventDefault();
  const status = $("#status");
  const file = $("#file").files[0];
  if (!file) return;
  const query = new URLSearchParams({ model: $("#model").value });
  for (const name of ["ticker", "tickers", "horizons"]) {
    const value = $(`#${name}`).value.trim();
    if (value) query.set(name, value);
  }
  const body = new FormData();
  body.append("file", file, file.name);
  status.className = "";
  status.textContent = `Forecasting ${file.name}…`;
  $("#submit").disabled = true;
  try {
    const response = await fetch(`/forecast?${query}`, authorized({ method: "POST", body }));
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new Error(refusal(response) || describeError(response.status, answer));
    status.textContent = `Forecast of ${file.name} done.`;
    showForecast(answer);
  } catch (error) {
    status.className = "error";
    status.textContent = error.message;
  } finally {
    $("#submit").disabled = false;
  }
}

async function refreshLive() {
  try {
    const response = await fetch("/predictions", authorized());
    const denied = refusal(response);
    if (denied) throw new Error(denied);
    const answer = await response.json();
    const reader = answer.reader;
    $("#reader").textContent = `${reader.topic}: ${reader.records_read} records read` +
      (reader.reachable ? "" : ` (broker: ${reader.detail})`);
    const body = $("#live tbody");
    body.replaceChildren();
    for (const entry of answer.predictions) {
      for (const latest of entry.horizons) {
        const p = latest.prediction || {};
        const s = latest.score || {};
        const row = body.insertRow();
        row.dataset.ticker = entry.ticker;
        row.dataset.horizon = String(latest.horizon);
        cell(row, entry.ticker);
        cell(row, latest.horizon);
        cell(row, p.as_of);
        cell(row, p.target_date);
        cell(row, number(p.predicted_close));
        cell(row, interval(p));
        cell(row, p.model ? `${p.model} ${p.model_version}` : "");
        cell(row, number(s.actual_close));
        cell(row, number(s.error));
      }
    }
  } catch (error) {
    $("#reader").textContent = `cannot read /predictions: ${error.message}`;
  }
}

async function refreshHealth() {
  const badge = $("#health");
  try {
    const health = await (await fetch("/health")).json();
    badge.className = `badge ${health.status}`;
    badge.textContent = `${health.status}: broker ${health.broker.reachable ? "up" : "down"}, ` +
      `model ${health.model.serving}`;
  } catch (error) {
    badge.className = "badge degraded";
    badge.textContent = "API unreachable";
  }
}

$("#token").value = sessionStorage.getItem(TOKEN_KEY) || "";
$("#token").addEventListener("change", (event) => {
  sessionStorage.setItem(TOKEN_KEY, event.target.value.trim());
  refreshLive();
});
$("#upload").addEventListener("submit", submit);
$("#series").addEventListener("change", (event) => showSeries(event.target.value));
refreshLive();
refreshHealth();
setInterval(refreshLive, 3000);
setInterval(refreshHealth, 10000);
