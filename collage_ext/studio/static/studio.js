// collage studio page: plain JavaScript, no libraries, nothing loaded from the network.
"use strict";
// The first address holds the session token (exchanged for an HttpOnly cookie): keep it out of the address bar.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
const $ = (id) => document.getElementById(id);
const S = {state: null, sources: [], frames: null, check: null, filter: "all", view: "sources", epoch: 1, open: null};
const FILTERS = [["all", "All"], ["problems", "Any finding"], ["too_small_for_collage", "Too small"],
  ["upscaled_image", "Upscaled"], ["low_contrast", "Low contrast"], ["caption_overflow", "Caption overflow"],
  ["cropped", "Cropped"], ["single", "Not in a frame"], ["dropped", "Dropped"]];
const BOX_SIDE = 560;  // the crop editor shows a source at most this big (CSS px)

function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]); }
function el(html) { const t = document.createElement("template"); t.innerHTML = html.trim(); return t.content.firstChild; }

async function api(path, body) {
  const opts = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) { toast(data.error || r.statusText, true); throw new Error(data.error); }
  return data;
}
let toastTimer = null;
function toast(msg, bad) {
  const t = $("toast"); t.textContent = msg; t.className = "toast" + (bad ? " error" : ""); t.hidden = false;
  clearTimeout(toastTimer); toastTimer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 2500);
}
function v() { return S.state ? S.state.version : 0; }
// Image URLs carry the version of what they show (the image file; the frame's pixels), not the dataset's:
// after an edit only the images it changed are fetched again, the rest stay on the page as they are.
function srcImg(s, thumb) { return `/api/source-image?id=${encodeURIComponent(s.id)}${thumb ? "&thumb=1" : ""}&v=${s.image_version ?? v()}`; }
function frameImg(f, thumb) { return `/api/frame-image?epoch=${S.epoch}&name=${encodeURIComponent(f.name)}${thumb ? "&thumb=1" : ""}&v=${f.pixels ?? v()}`; }

// ---- loading -------------------------------------------------------------------------------
async function refresh() {
  // All three at once: the server reads the dataset again once (for the first), the others wait for it.
  const [state, src, fr] = await Promise.all([api("/api/state"), api(`/api/sources?epoch=${S.epoch}`), api(`/api/frames?epoch=${S.epoch}`)]);
  S.state = state;
  renderState();
  S.sources = src.sources; S.frames = fr;
  if (S.open) openEditor(S.open, true);  // first: the edited image's frames start loading before the grids are built
  renderSources(); renderFrames();
  document.body.dataset.version = S.state.version;
  loadCheck();
}
async function loadCheck() {
  $("checkinfo").textContent = "checking…";
  const want = v();
  const c = await api(`/api/check?epoch=${S.epoch}`);
  if (c.version !== v() || want !== v()) return;
  S.check = c;
  $("checkinfo").textContent = `check: ${c.errors} errors, ${c.warnings} warnings · ${c.steps.split(" (")[0]}`;
  renderSources();
  if (S.open) renderFindings();
  document.body.dataset.checked = c.version;
}
function findingsOf(id) { return (S.check && S.check.findings[id]) || []; }

// ---- header ----------------------------------------------------------------------------------
function renderState() {
  const s = S.state;
  $("source").textContent = s.source; $("source").title = s.source;
  $("mode").textContent = s.mode; $("mode").title = s.mode_why;
  $("encoder").textContent = s.encoder; $("encoder").title = s.exact ? "counted with the real tokenizer" : "no local tokenizer: counts are estimates";
  $("seed").textContent = s.seed; $("seed").title = s.seed_why;
  $("saveseed").disabled = !s.config;
  for (const id of ["undo", "ed-undo"]) { $(id).disabled = !s.can_undo; $(id).title = s.undo ? `undo: ${s.undo}` : "nothing to undo"; }
  $("epochbox").hidden = s.static;
  const b = $("banner"); b.hidden = !s.error; b.textContent = s.error ? `Frames cannot be planned: ${s.error}` : "";
}

// ---- sources view -----------------------------------------------------------------------------
function matches(s, f) {
  const codes = findingsOf(s.id).map((x) => x.code);
  if (f === "all") return true;
  if (f === "dropped") return s.dropped;
  if (f === "cropped") return !!s.crop;
  if (f === "single") return !s.dropped && s.frames.length === 0;
  if (f === "problems") return codes.length > 0 || !!s.problem;
  return codes.includes(f);
}
function renderSources() {
  const bar = $("filters"); bar.innerHTML = "";
  for (const [key, label] of FILTERS) {
    const n = S.sources.filter((s) => matches(s, key)).length;
    if (key !== "all" && key !== S.filter && n === 0) continue;
    const b = el(`<button class="${S.filter === key ? "on" : ""}" data-filter="${key}">${esc(label)} · ${n}</button>`);
    b.onclick = () => { S.filter = key; renderSources(); };
    bar.append(b);
  }
  $("nsources").textContent = S.sources.filter((s) => !s.dropped).length;
  const grid = $("grid"); grid.innerHTML = "";
  const shown = S.sources.filter((s) => matches(s, S.filter));
  if (!shown.length) grid.append(el(`<div class="empty">No images match this filter.</div>`));
  for (const s of shown) grid.append(sourceCard(s));
}
function cropMark(s) {
  if (!s.crop || !s.size) return "";
  const [w, h] = s.size, [l, t, r, b] = s.crop;
  return `<div class="cropmark" style="left:${100 * l / w}%;top:${100 * t / h}%;width:${100 * (r - l) / w}%;height:${100 * (b - t) / h}%"></div>`;
}
function innerStyle(s) {
  if (!s.size) return "width:100%;height:100%";
  const [w, h] = s.size;
  return `aspect-ratio:${w}/${h};width:min(100%, ${(230 * w / h).toFixed(1)}px)`;
}
function sourceCard(s) {
  const badges = [];
  if (s.dropped) badges.push(`<span class="badge">dropped</span>`);
  else if (!s.collage) badges.push(`<span class="badge">single-image subset</span>`);
  else badges.push(s.frames.length ? `<span class="badge ok">in ${s.frames.length} frame${s.frames.length > 1 ? "s" : ""}</span>` : `<span class="badge">single</span>`);
  if (s.crop) badges.push(`<span class="badge info">cropped</span>`);
  if (s.problem) badges.push(`<span class="badge error" title="${esc(s.problem)}">unreadable</span>`);
  for (const f of findingsOf(s.id)) badges.push(`<span class="badge ${esc(f.level)}" title="${esc(f.message)}">${esc(f.code.replaceAll("_", " "))}</span>`);
  if (s.tokens && s.tokens.overflow) badges.push(`<span class="badge warning">${s.tokens.total} tokens</span>`);
  const card = el(`<div class="card ${s.dropped ? "dropped" : ""}" data-id="${esc(s.id)}">
    <div class="thumb"><div class="inner" style="${innerStyle(s)}"><img src="${srcImg(s, true)}" alt="${esc(s.name)}" loading="lazy">${cropMark(s)}</div></div>
    <div class="meta"><div class="name" title="${esc(s.path)}">${esc(s.name)}</div>
      <div class="muted" style="font-size:12px">${s.size ? s.size.join("×") : "?"} · ${esc(s.subset_name)}</div>
      <div class="cap">${esc(s.caption_text ?? s.caption)}</div><div class="badges">${badges.join("")}</div></div></div>`);
  card.onclick = () => openEditor(s.id);
  if (s.id === S.open) card.classList.add("open");
  return card;
}

// ---- token view -------------------------------------------------------------------------------
function tokenView(t, label) {
  if (!t) return "";
  const colors = ["var(--c0)", "var(--c1)", "var(--c2)", "var(--c3)", "var(--c4)"];
  const per = t.kind === "clip" ? `${t.chunks.join(" + ")} in ${t.chunks.length} chunk${t.chunks.length > 1 ? "s" : ""} of 75` : `${Math.min(t.total, t.max)} in one sequence`;
  const bar = t.kind === "clip"
    ? Array.from({length: t.max / t.chunk}, (_, k) => `<i style="width:${100 * (t.chunks[k] || 0) / t.max}%;background:${colors[k % 5]}"></i>`).join("")
    : `<i style="width:${100 * Math.min(t.total, t.max) / t.max}%;background:${colors[0]}"></i>`;
  let html = "", chunk = 0;
  for (const tag of t.tags) {
    if (t.kind === "clip" && tag.chunk > chunk && !tag.cut) { chunk = tag.chunk; html += `<span class="brk">chunk ${chunk + 1} · token ${chunk * 75}</span>`; }
    if (tag.cut && !html.includes("brk cutmark")) html += `<span class="brk cutmark" style="border-color:var(--bad)">cut at ${t.max}</span>`;
    const cls = ["tok", "k" + (tag.chunk % 5), tag.phrase ? "phrase" : "", tag.inserted ? "inserted" : "", tag.cut ? "cut" : ""].join(" ");
    const tip = `tokens ${tag.start}–${tag.end}${tag.inserted ? " · copy added by collage_repeat_phrases" : ""}${tag.straddles ? " · crosses a chunk boundary" : ""}${tag.cut ? " · past the budget: never trained" : ""}`;
    html += `<span class="${cls}" title="${esc(tip)}">${esc(tag.text)}</span>`;
  }
  if (t.more_tags) html += `<span class="brk more" style="border-color:var(--bad)">… about ${t.more_tags} more tags, all past the budget</span>`;
  const over = t.overflow ? ` · <span style="color:var(--bad)">${t.total_exact === false ? "at least " : ""}${t.overflow} cut off</span>` : "";
  return `<div class="tokview"><div class="tokhead">${label ? esc(label) + " · " : ""}${t.total_exact === false ? "at least " : ""}<b class="toktotal">${t.total}</b> of ${t.max} tokens (${per})${over}${t.repeated ? " · dashed = repeated phrase" : ""}</div>
    <div class="tokbar">${bar}</div><div class="toks">${html}</div></div>`;
}

// ---- editor ------------------------------------------------------------------------------------
function current() { return S.sources.find((s) => s.id === S.open); }
function openEditor(id, keepText) {
  S.open = id;
  const s = current();
  if (!s) { closeEditor(); return; }
  $("editor").hidden = false;
  document.querySelectorAll(".card[data-id]").forEach((c) => c.classList.toggle("open", c.dataset.id === id));
  $("ed-name").textContent = s.name;
  $("ed-meta").textContent = `${s.size ? s.size.join("×") : "?"} · ${s.subset_name}${s.dropped ? " · dropped (not trained)" : ""}`;
  $("ed-capfile").textContent = s.caption_file;
  const ta = $("ed-caption");
  // The caption's file version is the one the text came from: a save based on it is refused if the file changed since.
  if (!keepText || ta.dataset.id !== id || ta.dataset.dirty !== "1") { ta.value = (s.caption_text ?? s.caption).replace(/\n$/, ""); ta.dataset.dirty = "0"; ta.dataset.version = s.caption_version ?? ""; }
  ta.dataset.id = id;
  ta.disabled = s.dropped || !s.can_write; $("ed-save").disabled = ta.disabled;
  $("ed-drop").textContent = s.dropped ? "Restore to training" : "Drop from training";
  $("ed-drop").className = s.dropped ? "primary" : "danger";
  $("ed-clear").disabled = !s.crop || s.dropped;
  $("ed-tokens").innerHTML = tokenView(s.tokens, S.state.encoder);
  setupCrop(s);
  renderFindings();
  renderEditorFrames(s);
}
function closeEditor() {
  S.open = null; $("editor").hidden = true;
  document.querySelectorAll(".card.open").forEach((c) => c.classList.remove("open"));
}
function renderFindings() {
  const s = current(); if (!s) return;
  const items = findingsOf(s.id).map((f) => `<li class="${esc(f.level)}">${esc(f.message)}</li>`);
  if (s.problem) items.unshift(`<li class="error">${esc(s.problem)}</li>`);
  $("ed-findings").innerHTML = items.join("");
}
function renderEditorFrames(s) {
  const box = $("ed-frames"); box.innerHTML = "";
  const frames = (S.frames ? S.frames.frames : []).filter((f) => f.sources.some((x) => x.id === s.id));
  if (!frames.length) box.append(el(`<div class="muted">${s.dropped ? "Dropped: in no frame." : "Trains as a single image this epoch."}</div>`));
  for (const f of frames) {
    const node = el(`<div class="edframe" data-frame="${esc(f.name)}"><img src="${frameImg(f, true)}" alt="${esc(f.name)}">
      <div><div><b>${esc(f.layout)}</b> · fill ${(100 * f.fill).toFixed(0)}% · <span class="mono muted">${esc(f.name)}</span></div>
      <div class="framecap">${tokenView(f.tokens, "merged caption")}</div></div></div>`);
    box.append(node);
  }
}

// crop rectangle: drawn, moved and resized with pointer events; saved on release
let drag = null;
function setupCrop(s) {
  const img = $("ed-img"), boxEl = $("ed-box");
  if (!s.size) { img.removeAttribute("src"); boxEl.hidden = true; return; }
  const [w, h] = s.size, k = Math.min(BOX_SIDE / w, BOX_SIDE / h, 1);
  img.width = Math.round(w * k); img.height = Math.round(h * k);
  const want = srcImg(s, false);
  if (img.getAttribute("src") !== want) img.src = want;
  S.scale = w / img.width;
  S.box = s.crop ? s.crop.map((x) => x / S.scale) : null;
  drawBox();
}
function drawBox() {
  const b = $("ed-box"), s = current();
  if (!S.box) { b.hidden = true; $("ed-crop").textContent = "no crop: the whole image is used"; return; }
  const [l, t, r, bo] = S.box;
  Object.assign(b.style, {left: l + "px", top: t + "px", width: (r - l) + "px", height: (bo - t) + "px"});
  b.hidden = false;
  const px = natural(S.box, s);
  $("ed-crop").textContent = `crop ${px.join(", ")} px (${px[2] - px[0]}×${px[3] - px[1]})`;
}
function natural(box, s) {
  const [w, h] = s.size;
  const c = (x, lim) => Math.max(0, Math.min(lim, Math.round(x * S.scale)));
  return [c(box[0], w), c(box[1], h), c(box[2], w), c(box[3], h)];
}
function pointIn(e) { const r = $("ed-img").getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
$("ed-wrap").addEventListener("pointerdown", (e) => {
  const s = current(); if (!s || s.dropped || !s.size) return;
  e.preventDefault(); $("ed-wrap").setPointerCapture(e.pointerId);
  const p = pointIn(e), handle = e.target.dataset && e.target.dataset.h;
  if (handle) drag = {mode: handle, start: p, box: S.box.slice()};
  else if (e.target === $("ed-box")) drag = {mode: "move", start: p, box: S.box.slice()};
  else { drag = {mode: "new", start: p}; S.box = [p[0], p[1], p[0], p[1]]; }
});
$("ed-wrap").addEventListener("pointermove", (e) => {
  if (!drag) return;
  const img = $("ed-img"), W = img.width, H = img.height, p = pointIn(e);
  const cl = (x, lim) => Math.max(0, Math.min(lim, x));
  const [dx, dy] = [p[0] - drag.start[0], p[1] - drag.start[1]];
  if (drag.mode === "new") {
    const [x0, y0] = drag.start, x1 = cl(p[0], W), y1 = cl(p[1], H);
    S.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
  } else if (drag.mode === "move") {
    const [l, t, r, b] = drag.box, mx = Math.max(-l, Math.min(W - r, dx)), my = Math.max(-t, Math.min(H - b, dy));
    S.box = [l + mx, t + my, r + mx, b + my];
  } else {
    let [l, t, r, b] = drag.box;
    if (drag.mode.includes("w")) l = cl(l + dx, W); if (drag.mode.includes("e")) r = cl(r + dx, W);
    if (drag.mode.includes("n")) t = cl(t + dy, H); if (drag.mode.includes("s")) b = cl(b + dy, H);
    S.box = [Math.min(l, r), Math.min(t, b), Math.max(l, r), Math.max(t, b)];
  }
  drawBox();
});
$("ed-wrap").addEventListener("pointerup", async () => {
  if (!drag) return;
  drag = null;
  const s = current(), px = natural(S.box, s);
  if (px[2] - px[0] < 4 || px[3] - px[1] < 4) { S.box = s.crop ? s.crop.map((x) => x / S.scale) : null; drawBox(); return; }
  const saved = await api("/api/crop", {id: s.id, box: px, version: s.crop_version}).catch(() => null);
  if (saved) toast(`crop saved to ${s.name.replace(/\.[^.]+$/, "")}.crop`);
  await refresh();
});
$("ed-clear").onclick = async () => { const s = current(); const saved = await api("/api/crop", {id: s.id, box: null, version: s.crop_version}).catch(() => null); if (saved) toast("crop cleared"); await refresh(); };
$("ed-drop").onclick = async () => {
  const s = current();
  await api(s.dropped ? "/api/restore" : "/api/drop", {id: s.id});
  toast(s.dropped ? `${s.name} is back in training` : `${s.name} moved to _collage_studio/dropped/ (sd-scripts will not see it)`);
  await refresh();
};
$("ed-close").onclick = closeEditor;
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && S.open) closeEditor(); });
let typing = null;
$("ed-caption").addEventListener("input", () => {
  $("ed-caption").dataset.dirty = "1";
  clearTimeout(typing);
  typing = setTimeout(async () => {
    const s = current(); if (!s || $("ed-caption").dataset.dirty !== "1") return;  // saved meanwhile
    const t = await api("/api/tokens", {id: s.id, text: $("ed-caption").value});
    if ($("ed-caption").dataset.dirty !== "1") return;
    $("ed-tokens").innerHTML = tokenView(t, S.state.encoder + " · unsaved");
  }, 250);
});
async function saveCaption() {
  const s = current(); if (!s) return;
  let saved;
  try {
    saved = await api("/api/caption", {id: s.id, text: $("ed-caption").value, version: $("ed-caption").dataset.version || null});
  } catch (err) { $("ed-caption").dataset.conflict = "1"; return; }  // the toast says why (a 409: changed elsewhere)
  $("ed-caption").dataset.dirty = "0"; $("ed-caption").dataset.conflict = "0";
  // The answer carries the saved caption's token view: show it now, the frames follow with the refresh.
  if (S.open === s.id && saved && saved.tokens) $("ed-tokens").innerHTML = tokenView(saved.tokens, S.state.encoder);
  toast(`caption saved to ${s.caption_file}`);
  await refresh();
}
$("ed-save").onclick = saveCaption;
$("ed-caption").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); saveCaption(); } });

// ---- frames view ------------------------------------------------------------------------------
function renderFrames() {
  const f = S.frames; if (!f) return;
  $("nframes").textContent = f.frames.length;
  S.framesShown = S.view === "frames";
  if (!S.framesShown) return;  // the Frames tab is built when it is opened (hundreds of cards: not after every edit)
  $("framesummary").innerHTML = `<span><b>${f.frames.length}</b> collage frames${f.mode === "static" ? " (static: every epoch)" : ` in epoch <b>${f.epoch}</b>`}</span>
    <span><b>${f.singles}</b> single-image samples</span>${f.mean_fill != null ? `<span>mean fill <b>${(100 * f.mean_fill).toFixed(1)}%</b></span>` : ""}
    <span>seed <b>${f.seed}</b></span>`;
  const grid = $("framegrid"); grid.innerHTML = "";
  if (!f.frames.length) grid.append(el(`<div class="empty">No collage frames: every sample is a single image (is collage_rate set?).</div>`));
  for (const fr of f.frames) {
    const chips = fr.sources.map((x) => `<span class="chip ${x.span >= 0.95 ? "full" : ""}" data-src="${esc(x.id)}" title="span ${(100 * x.span).toFixed(0)}% of the frame">${esc(x.name)} · ${(100 * x.span).toFixed(0)}%</span>`).join("");
    const card = el(`<div class="card frame" data-frame="${esc(fr.name)}">
      <div class="thumb"><a href="${frameImg(fr, false)}" target="_blank"><img src="${frameImg(fr, true)}" alt="${esc(fr.name)}" loading="lazy"></a></div>
      <div class="meta"><div class="row"><b>${esc(fr.layout)}</b><span class="muted">${fr.frame.join("×")}</span><span class="spacer"></span>
        <span title="share of the frame that shows source pixels">fill ${(100 * fr.fill).toFixed(0)}%</span></div>
        <div class="fillbar"><i style="width:${100 * fr.fill}%"></i></div>
        <div class="chips">${chips}</div>
        <details><summary class="muted">caption · ${fr.tokens.total} tokens</summary><div class="framecap">${tokenView(fr.tokens)}</div></details>
        ${fr.warnings.map((w) => `<div class="warn">⚠ ${esc(w)}</div>`).join("")}</div></div>`);
    card.querySelectorAll(".chip").forEach((c) => { c.onclick = (e) => { e.stopPropagation(); if (c.dataset.src) openEditor(c.dataset.src); }; });
    card.style.cursor = "default";
    grid.append(card);
  }
}

// ---- navigation and header actions ---------------------------------------------------------------
document.querySelectorAll(".tab").forEach((b) => { b.onclick = () => {
  S.view = b.dataset.view;
  document.querySelectorAll(".tab").forEach((x) => x.classList.toggle("active", x === b));
  $("sources").hidden = S.view !== "sources"; $("frames").hidden = S.view !== "frames";
  if (S.view === "frames" && !S.framesShown) renderFrames();
}; });
async function setEpoch(n) { S.epoch = Math.max(1, n | 0); $("epoch").value = S.epoch; await refresh(); }
$("epoch").onchange = () => setEpoch(+$("epoch").value);
$("eprev").onclick = () => setEpoch(S.epoch - 1);
$("enext").onclick = () => setEpoch(S.epoch + 1);
$("undo").onclick = $("ed-undo").onclick = async () => { const r = await api("/api/undo", {}); toast(r.undone ? `undone: ${r.undone}` : "nothing to undo"); $("ed-caption").dataset.dirty = "0"; await refresh(); };
$("reload").onclick = async () => { await api("/api/reload", {}); toast("dataset read again"); await refresh(); };
$("reroll").onclick = async () => { await api("/api/seed", {}); toast("new seed: frames regrouped"); await refresh(); };
$("saveseed").onclick = async () => { const r = await api("/api/seed", {seed: S.state.seed, write: true}); toast(`seed ${r.seed} written to ${r.config}`); await refresh(); };
refresh();
