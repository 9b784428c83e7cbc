"""The explorer page: one HTML file, vanilla JS, served live or written with a static manifest.

Kept as a Python string so it ships with the package without package-data rules. Live, the
page asks `/api/*`; exported, `window` carries a manifest of pre-rendered draws and the
same code reads it instead (settings are then fixed and a click cycles through the draws).
"""

from __future__ import annotations

import json

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>I-JEPA explorer</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #15171c; color: #e8e8e8; }
header { padding: 10px 18px; background: #20232b; display: flex; gap: 18px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; }
#model { color: #9fd3ff; }
#model.random { color: #fff; background: #b3261e; padding: 2px 8px; border-radius: 4px; font-weight: 600; }
main { display: flex; gap: 16px; padding: 14px 18px; }
aside { width: 330px; flex: none; }
fieldset { border: 1px solid #3a3f4b; border-radius: 6px; margin: 0 0 12px; padding: 8px 10px; }
legend { color: #aab; }
label { display: flex; justify-content: space-between; gap: 6px; margin: 3px 0; }
input[type=number] { width: 58px; background: #111; color: #eee; border: 1px solid #444; }
button { background: #2f6fdb; color: white; border: 0; border-radius: 4px; padding: 6px 12px; cursor: pointer; }
#picker { max-height: 330px; overflow-y: auto; }
#picker h3 { font-size: 12px; color: #aab; margin: 6px 0 2px; text-transform: uppercase; }
#picker img, #neighbours img { width: 48px; height: 48px; margin: 1px; cursor: pointer; border: 2px solid transparent; image-rendering: pixelated; }
#picker img.on { border-color: #ffb020; }
#panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 14px; flex: 1; align-content: start; }
.panel { background: #1d2027; border-radius: 8px; padding: 10px; }
.panel h2 { font-size: 14px; margin: 0 0 6px; }
.panel img.view { width: 256px; height: 256px; image-rendering: pixelated; display: block; }
#mask { cursor: pointer; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
#scale { height: 10px; width: 256px; border-radius: 3px; }
.small { font-size: 12px; color: #aab; }
#error { color: #ff7b72; }
#neighbours figure { display: inline-block; margin: 0 4px 4px 0; text-align: center; font-size: 11px; }
</style></head>
<body>
<header><h1>I-JEPA explorer</h1><span id="model"></span><span id="status" class="small"></span><span id="error"></span></header>
<main>
<aside>
  <fieldset><legend>Image</legend>
    <div id="picker"></div>
    <div id="uploadbox"><label>Upload <input type="file" id="upload" accept="image/*"></label></div>
  </fieldset>
  <fieldset id="settingsbox"><legend>Mask collator</legend>
    <form id="settings" onsubmit="return false">
      <label>context scale <span><input name="enc_min" type="number" step="0.05" min="0.05" max="1"> – <input name="enc_max" type="number" step="0.05" min="0.05" max="1"></span></label>
      <label>target scale <span><input name="pred_min" type="number" step="0.01" min="0.01" max="1"> – <input name="pred_max" type="number" step="0.01" min="0.01" max="1"></span></label>
      <label>target aspect <span><input name="ar_min" type="number" step="0.05" min="0.1" max="10"> – <input name="ar_max" type="number" step="0.05" min="0.1" max="10"></span></label>
      <label>number of targets <input name="npred" type="number" step="1" min="1" max="16"></label>
      <label>min_keep <input name="min_keep" type="number" step="1" min="0"></label>
      <label>allow overlap <input name="overlap" type="checkbox"></label>
    </form>
    <p><button id="resample">Re-sample masks</button> <span class="small">seed <span id="seed">0</span></span></p>
    <p id="staticnote" class="small" hidden></p>
  </fieldset>
  <p id="notes" class="small"></p>
</aside>
<section id="panels">
  <div class="panel"><h2>Image <span id="name" class="small"></span></h2><img id="image" class="view" alt="image">
    <div id="input" class="small"></div></div>
  <div class="panel"><h2>Context and targets <span class="small">(click to re-sample)</span></h2>
    <img id="mask" class="view" alt="masks" title="click to re-sample">
    <div id="fractions"></div><div id="targets" class="small"></div></div>
  <div class="panel"><h2>Prediction vs target (cosine)</h2>
    <img id="heat" class="view" alt="heat-map">
    <div id="scale"></div><div class="small"><span id="scalelabel">−1 … 0 … +1</span> &nbsp; <span id="hover"></span></div>
    <label class="small">stretch colours to this draw's range <input id="stretch" type="checkbox"></label>
    <div id="loss"></div></div>
  <div class="panel"><h2>PCA of patch features</h2><img id="pca" class="view" alt="PCA">
    <div class="small">first 3 principal components of the target encoder's patch features → R, G, B</div></div>
  <div class="panel"><h2>Nearest neighbours <span class="small">(pooled target-encoder feature, centred on the gallery mean; cosine)</span></h2><div id="neighbours"></div></div>
</section>
</main>
<script>
const STATIC = __MANIFEST__;
const $ = (id) => document.getElementById(id);
let info = null, current = null, seed = 0, heat = null, last = null, busy = false, pending = false;

async function getJSON(url, opts) {
  const r = await fetch(url, opts);
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}
function thumbUrl(id) { return STATIC ? STATIC.thumbs[id] : `/api/thumb/${encodeURIComponent(id)}.png`; }
function fmt(x, d = 3) { return Number(x).toFixed(d); }

function fillSettings(s) {
  const f = $("settings").elements;
  [f.enc_min.value, f.enc_max.value] = s.enc_mask_scale;
  [f.pred_min.value, f.pred_max.value] = s.pred_mask_scale;
  [f.ar_min.value, f.ar_max.value] = s.aspect_ratio;
  f.npred.value = s.npred; f.min_keep.value = s.min_keep; f.overlap.checked = s.allow_overlap;
}
function settingsQuery() {
  const f = $("settings").elements;
  return new URLSearchParams({
    enc_scale: `${f.enc_min.value},${f.enc_max.value}`, pred_scale: `${f.pred_min.value},${f.pred_max.value}`,
    aspect: `${f.ar_min.value},${f.ar_max.value}`, npred: f.npred.value, min_keep: f.min_keep.value,
    overlap: f.overlap.checked ? "1" : "0", image: current, seed: String(seed),
  });
}
async function fetchSample() {
  if (STATIC) { const draws = STATIC.samples[current]; return draws[seed % draws.length]; }
  return getJSON("/api/sample?" + settingsQuery());
}
async function update() {
  if (busy) { pending = true; return; }
  busy = true; $("status").textContent = "computing…";
  try { show(await fetchSample()); $("error").textContent = ""; }
  catch (e) { $("error").textContent = e.message; }
  busy = false; $("status").textContent = "";
  if (pending) { pending = false; update(); }
}
function show(s) {
  for (const k of ["image", "mask", "pca"]) $(k).src = s.png[k];
  const stretch = $("stretch").checked;
  $("heat").src = s.png[stretch ? "heat_stretched" : "heat"];
  $("scalelabel").textContent = stretch ? `${fmt(s.cos_range[0])} … ${fmt(s.cos_range[1])}` : "−1 … 0 … +1";
  last = s; heat = s.heat; $("seed").textContent = s.seed; $("name").textContent = s.name;
  document.body.dataset.seed = s.seed;
  $("fractions").innerHTML = `<span class="swatch" style="background:#3c8cff"></span>context ${fmt(100 * s.context_fraction, 1)}% of patches (${s.n_context}) · targets ${fmt(100 * s.target_fraction, 1)}%`
    + (s.overlap ? `<br><span class="small">${s.overlap} context patches are also targets${s.settings.allow_overlap ? "" : " (the collator relaxed its no-overlap rule: targets too large)"}</span>` : "");
  $("targets").innerHTML = s.targets.map((t, i) => `<span class="swatch" style="background:${t.colour}"></span>target ${i + 1}: ${t.size} patches, mean cos ${fmt(t.mean_cos)}`).join("<br>");
  $("loss").innerHTML = `loss (${info.loss_name}) <b>${fmt(s.loss, 4)}</b> · mean cos <b>${fmt(s.mean_cos)}</b>`;
  $("neighbours").innerHTML = "";
  for (const n of s.neighbours) {
    const fig = document.createElement("figure"), img = document.createElement("img");
    img.src = thumbUrl(n.id); img.title = n.name;
    if (!STATIC || n.id in STATIC.samples) img.onclick = () => select(n.id);
    else img.style.cursor = "default";  // in the gallery, but not exported
    fig.append(img, document.createElement("br"), fmt(n.sim, 4));
    $("neighbours").appendChild(fig);
  }
}
function select(id) {
  current = id;
  for (const img of $("picker").querySelectorAll("img")) img.classList.toggle("on", img.dataset.id === id);
  update();
}
function addThumb(im) {
  let group = $("picker").querySelector(`div[data-source="${im.source}"]`);
  if (!group) {
    group = document.createElement("div"); group.dataset.source = im.source;
    group.innerHTML = `<h3>${im.source}</h3>`; $("picker").appendChild(group);
  }
  const img = document.createElement("img");
  img.src = thumbUrl(im.id); img.title = im.name; img.dataset.id = im.id;
  img.onclick = () => select(im.id);
  group.appendChild(img);
}
function resample() { seed += 1; update(); }
$("mask").onclick = resample;
$("resample").onclick = resample;
$("settings").onchange = () => update();
$("stretch").onchange = () => { if (last) show(last); };
$("heat").onmousemove = (e) => {
  if (!heat) return;
  const r = Math.floor(e.offsetY / e.target.clientHeight * heat.length);
  const c = Math.floor(e.offsetX / e.target.clientWidth * heat[0].length);
  const v = (heat[r] || [])[c];
  $("hover").textContent = v == null ? `patch (${r}, ${c}): not a target` : `patch (${r}, ${c}): cos ${fmt(v)}`;
};
$("upload").onchange = async (e) => {
  const file = e.target.files[0]; if (!file) return;
  try {
    const im = await getJSON("/api/upload?name=" + encodeURIComponent(file.name), { method: "POST", body: file });
    info.images.push(im); addThumb(im); select(im.id);
  } catch (err) { $("error").textContent = err.message; }
};
async function start() {
  info = STATIC ? STATIC.info : await getJSON("/api/info");
  $("model").textContent = info.label;
  $("input").textContent = `the model sees ${info.img_size}×${info.img_size} px, ${info.in_chans === 1 ? "grayscale" : "RGB"}: ${info.grid[0]}×${info.grid[1]} patches of ${info.patch_size} px`;
  $("model").classList.toggle("random", info.random_init);
  $("scale").style.background = `linear-gradient(to right, ${info.legend.join(",")})`;
  $("notes").textContent = info.notes.join(" ");
  fillSettings(info.defaults);
  if (STATIC) {
    for (const el of $("settings").elements) el.disabled = true;
    $("uploadbox").hidden = true;
    $("staticnote").hidden = false;
    $("staticnote").textContent = `Static export: settings fixed, a click cycles through ${STATIC.draws} pre-sampled draws. Run \`ijepa explore\` to change them.`;
  }
  const images = STATIC ? info.images.filter((im) => im.id in STATIC.samples) : info.images;
  images.forEach(addThumb);
  select(info.default_image || images[0].id);
}
start().catch((e) => { $("error").textContent = e.message; });
</script>
</body></html>
"""


def page_html(manifest: dict | None = None) -> str:
    """The page, live (no manifest) or static (the export's manifest inlined as JSON)."""
    data = json.dumps(manifest).replace("</", "<\\/") if manifest is not None else "null"
    return PAGE.replace("__MANIFEST__", data)
