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
.panel img.view[hidden] { display: none; }
#mask { cursor: pointer; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
#scale { height: 10px; width: 256px; border-radius: 3px; }
.small { font-size: 12px; color: #aab; }
#error { color: #ff7b72; }
#flow, #encoderonly { grid-column: 1 / -1; }
#flow { background: #1d2027; border-radius: 8px; padding: 8px 12px; }
#flow summary { cursor: pointer; font-weight: 600; }
#flow ol { margin: 6px 0; padding-left: 20px; }
.enc { color: #9fd3ff; font-size: 12px; font-weight: normal; }
.note { color: #ffcf70; font-size: 12px; }
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
  <p id="encoderonly" class="note" hidden></p>
  <details id="flow" open><summary>How I-JEPA sees an image (data flow)</summary>
    <ol>
      <li><b>Context encoder</b> (a ViT, trained by gradient) sees only the <span style="color:#3c8cff">context patches</span> and turns them into tokens.</li>
      <li><b>Predictor</b> (a narrower ViT, trained by gradient) takes those tokens and the positions of one target block, and outputs one token per target patch.</li>
      <li><b>Target encoder</b> (an EMA: an exponential moving average of the context encoder's weights, never trained by gradient) sees the whole image; its layer-normed tokens at the target patches are what the predictor must match. The loss is on tokens, never on pixels. Evaluations, the PCA and the neighbours here use the target encoder.</li>
    </ol>
    <div class="small" id="contextwhy"></div>
    <div class="small" id="decoderwhy">To show <i>what</i> was predicted, a pixel decoder is trained on the frozen target encoder's tokens only (never on predictions; <code>ijepa decoder train RUN</code>) and then decodes the predictor's outputs. It is deterministic: where the tokens leave a patch uncertain it paints the average of what is possible, so blur means uncertainty, not a wrong guess. With a diffusion decoder (<code>ijepa decoder train RUN --kind diffusion</code>, RCDM-like, as the paper's Figure 6) panel (c) also shows four samples: what the tokens leave open varies between them.</div>
  </details>
  <div class="panel"><h2>Image <span id="name" class="small"></span></h2><img id="image" class="view" alt="image">
    <div id="input" class="small"></div></div>
  <div class="panel"><h2>Context and targets <span class="small">(click to re-sample)</span> <span class="enc">mask collator</span></h2>
    <img id="mask" class="view" alt="masks" title="click to re-sample">
    <div id="fractions"></div><div id="targets" class="small"></div></div>
  <div class="panel"><h2>(a) What the context encoder saw <span class="enc">context encoder input</span></h2><img id="ctx" class="view" alt="context">
    <div class="small">context patches only; target blocks outlined</div></div>
  <div class="panel"><h2>(b) Target tokens, decoded <span class="enc">target encoder → decoder</span></h2><img id="dtarget" class="view" alt="decoded targets">
    <div class="small">each target block decoded from its own target tokens alone: the most the decoder can show</div><div class="nodecoder note"></div><div id="dtargeterr" class="small"></div></div>
  <div class="panel" id="dpredpanel"><h2>(c) Predictions, decoded <span class="enc">context encoder → predictor → decoder</span></h2><img id="dpred" class="view" alt="decoded predictions">
    <div class="small">what the predictor predicted for each block, painted by the same decoder; the rest of the image dimmed</div><div class="nodecoder note"></div><div id="dprederr" class="small"></div>
    <img id="dsamples" class="view" alt="diffusion samples of the predictions" hidden><div id="dsampleslabel" class="small"></div></div>
  <div class="panel"><h2>(d) MAE's reconstruction <span class="enc">MAE encoder → MAE pixel decoder</span></h2><img id="mae" class="view" alt="MAE reconstruction">
    <div id="maelabel" class="small"></div><div id="maenote" class="note"></div></div>
  <div class="panel" id="heatpanel"><h2>Prediction vs target (cosine) <span class="enc">predictor(context encoder) vs target encoder</span></h2>
    <img id="heat" class="view" alt="heat-map">
    <div id="scale"></div><div class="small"><span id="scalelabel">−1 … 0 … +1</span> &nbsp; <span id="hover"></span></div>
    <label class="small">stretch colours to this draw's range <input id="stretch" type="checkbox"></label>
    <div id="loss"></div></div>
  <div class="panel"><h2>PCA of patch features <span class="enc">target encoder</span></h2><img id="pca" class="view" alt="PCA">
    <div class="small">first 3 principal components of the target encoder's patch features → R, G, B</div></div>
  <div class="panel"><h2>Nearest neighbours <span class="enc">target encoder, pooled</span></h2>
    <div class="small">cosine, centred on the gallery mean; gallery: <span id="gallery"></span></div><div id="gallerynote" class="note"></div><div id="neighbours"></div></div>
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
  const pics = { ctx: "context", dtarget: "decoded_target", dpred: "decoded_pred", dsamples: "sampled_pred", mae: "mae" };
  for (const [id, k] of Object.entries(pics)) { $(id).hidden = !s.png[k]; if (s.png[k]) $(id).src = s.png[k]; }
  const perBlock = (key) => s.targets.filter((t) => key in t).map((t, i) => `<span class="swatch" style="background:${t.colour}"></span>pixel MSE ${fmt(t[key], 3)}`).join(" ");
  $("dtargeterr").innerHTML = perBlock("target_mse"); $("dprederr").innerHTML = perBlock("pred_mse");
  const stretch = $("stretch").checked;
  if (s.heat) {  // an encoder-only model predicts nothing: no heat-map, no loss
    $("heat").src = s.png[stretch ? "heat_stretched" : "heat"];
    $("scalelabel").textContent = stretch ? `${fmt(s.cos_range[0])} … ${fmt(s.cos_range[1])}` : "−1 … 0 … +1";
    $("loss").innerHTML = `loss (${info.loss_name}) <b>${fmt(s.loss, 4)}</b> · mean cos <b>${fmt(s.mean_cos)}</b>`;
  }
  last = s; heat = s.heat || null; $("seed").textContent = s.seed; $("name").textContent = s.name;
  document.body.dataset.seed = s.seed;
  $("fractions").innerHTML = `<span class="swatch" style="background:#3c8cff"></span>context ${fmt(100 * s.context_fraction, 1)}% of patches (${s.n_context}) · targets ${fmt(100 * s.target_fraction, 1)}%`
    + (s.overlap ? `<br><span class="small">${s.overlap} context patches are also targets${s.settings.allow_overlap ? "" : " (the collator relaxed its no-overlap rule: targets too large)"}</span>` : "");
  $("targets").innerHTML = s.targets.map((t, i) => `<span class="swatch" style="background:${t.colour}"></span>target ${i + 1}: ${t.size} patches` + ("mean_cos" in t ? `, mean cos ${fmt(t.mean_cos)}` : "")).join("<br>");
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
  $("contextwhy").textContent = "Why the context is small: " + info.context_why;
  if (info.encoder_only) {
    $("encoderonly").hidden = false; $("encoderonly").textContent = info.encoder_only;
    for (const id of ["heatpanel", "dpredpanel"]) $(id).hidden = true;
  }
  for (const el of document.querySelectorAll(".nodecoder")) el.textContent = info.decoder ? "" : info.decoder_note;
  $("dsampleslabel").textContent = info.diffusion ? "4 samples of the same predictions from the diffusion decoder (2 × 2; context patches known, 25 DDIM steps)" : (info.diffusion_note || "");
  $("maelabel").textContent = info.mae ? `${info.mae}: MAE predicts each patch standardised; shown with the true patch's mean and contrast put back` : "";
  $("maenote").textContent = info.mae ? "" : "No MAE run: start with `ijepa explore RUN --mae MAE_RUN` (an `ijepa pretrain --method mae` run of the same grid) to compare pixel reconstruction with I-JEPA's token prediction.";
  $("gallery").textContent = `${info.gallery.size} images (${info.gallery.name})`;
  $("gallerynote").textContent = info.gallery.small ? `A gallery of ${info.gallery.size} images is small: "nearest" here means little (a Fashion-MNIST model searches 2,000 val images).` : "";
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
