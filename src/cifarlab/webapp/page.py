"""The one page of `cifarlab serve`: plain HTML, CSS and JS in one string, nothing fetched from elsewhere.
Text from the server is put in with textContent, never parsed as HTML."""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cifarlab: try a model</title>
<style>
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da; --bad: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main, header { max-width: 980px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 16px; }
h1 { font-size: 1.5rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 0 0 .5rem; }
.sub { color: var(--muted); margin: 0 0 1rem; }
#drop { display: block; border: 2px dashed var(--line); border-radius: 10px; padding: 1.5rem 1rem; text-align: center;
        cursor: pointer; background: var(--soft); }
#drop.over { border-color: var(--accent); background: #ddf4ff; }
#drop input { display: block; margin: .75rem auto 0; max-width: 100%; }
.hint { color: var(--muted); font-size: .85rem; margin: .25rem 0; }
.actions { margin: .75rem 0; display: flex; gap: .75rem; align-items: center; flex-wrap: wrap; }
button.main { font: inherit; padding: .45rem .9rem; border-radius: 6px; border: 1px solid var(--line);
              background: #fff; cursor: pointer; }
button.main:hover { border-color: var(--accent); }
#error { color: var(--bad); font-weight: 600; }
[hidden] { display: none !important; }  /* else #result's display:flex shows it before any upload */
#result { display: flex; flex-wrap: wrap; gap: 1.5rem; margin: 1rem 0 2rem; }
.pictures { display: flex; gap: 1rem; flex-wrap: wrap; }
figure { margin: 0; }
figure img { display: block; width: min(256px, 42vw); height: auto; image-rendering: pixelated;
             border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: .85rem; max-width: min(256px, 42vw); }
.scores { flex: 1 1 300px; min-width: 260px; }
#predictions { list-style: none; padding: 0; margin: 0; }
#predictions button { width: 100%; display: grid; grid-template-columns: 7rem 1fr 4rem; gap: .5rem; align-items: center;
                      font: inherit; background: none; border: 1px solid transparent; border-radius: 6px;
                      padding: .3rem .4rem; cursor: pointer; text-align: left; }
#predictions button:hover { border-color: var(--line); }
#predictions button[aria-pressed="true"] { border-color: var(--accent); background: #ddf4ff; }
.name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { height: .8rem; background: var(--soft); border-radius: 4px; overflow: hidden; }
.bar span { display: block; height: 100%; background: var(--accent); }
.pct { text-align: right; font-variant-numeric: tabular-nums; }
#truth { margin: 0 0 .5rem; }
select { font: inherit; padding: .35rem .5rem; border-radius: 6px; border: 1px solid var(--line); max-width: 100%; }
#trust { font-size: .85rem; max-width: min(256px, 42vw); margin: .35rem 0 0; padding: .3rem .5rem; border-radius: 6px;
         background: var(--soft); }
#trust.good { background: #dafbe1; }
#trust.marked { background: #ffebe9; }
footer { color: var(--muted); font-size: .85rem; max-width: 980px; margin: 0 auto 2rem; padding: 0 16px; }
</style>
</head>
<body>
<header>
<h1>cifarlab: try a model</h1>
<p class="sub" id="model">Loading the model…</p>
</header>
<main>
<label id="drop" for="file">
<strong>Drop an image here</strong>, or choose a file:
<input type="file" id="file" name="file" accept="image/*">
<span class="hint" id="limits">PNG, JPEG, GIF, BMP, WebP or TIFF. It is shrunk to 32×32 pixels, as in CIFAR-10.</span>
</label>
<div class="actions">
<button type="button" class="main" id="random">Random test image</button>
<label for="method">Explanation method</label>
<select id="method" name="method"></select>
<span id="status" role="status"></span>
</div>
<p class="hint" id="method-trust"></p>
<p id="error" role="alert" hidden></p>
<section id="result" hidden aria-live="polite">
<div class="pictures">
<figure><img id="input-image" alt="the image the model sees, enlarged">
<figcaption>What the model sees (32×32, enlarged)</figcaption></figure>
<figure><img id="overlay" alt="explanation overlay">
<figcaption id="overlay-caption">explanation</figcaption>
<p id="trust"></p></figure>
</div>
<div class="scores">
<h2>Top classes</h2>
<p id="truth" hidden></p>
<ol id="predictions"></ol>
<p class="hint">Click a class to see where the model finds it (red is where that class's evidence is).</p>
</div>
</section>
</main>
<footer>Served by <code>cifarlab serve</code>. For scripts: <code>POST /api/predict</code> (multipart, field
<code>file</code>, optional <code>target</code> and <code>method</code>); its OpenAPI schema is at
<a href="openapi.json">/openapi.json</a>.</footer>
<script>
(function () {
  'use strict';
  var current = null, currentTarget = null, maxBytes = null, methods = {};
  var $ = function (id) { return document.getElementById(id); };

  function status(text) { $('status').textContent = text; }
  function error(text) {
    $('error').textContent = text;
    $('error').hidden = !text;
    if (text) {  // the previous image's prediction does not belong to the file that failed
      status('');
      $('result').hidden = true;
      $('truth').hidden = true;
    }
  }
  function detail(body, response) {
    var d = body && body.detail;
    if (Array.isArray(d)) { return d.map(function (x) { return x.msg; }).join('; '); }
    return d || ('the server answered ' + response.status);
  }

  fetch('api/info').then(function (r) { return r.json(); }).then(function (info) {
    var acc = info.test_accuracy == null ? '' : ', test accuracy ' + (100 * info.test_accuracy).toFixed(1) + '%';
    $('model').textContent = info.model + acc + ': ' + info.classes.length + ' classes (' +
      info.classes.join(', ') + '), test-time augmentation ' + info.tta;
    maxBytes = info.max_upload_bytes;
    var select = $('method');
    info.methods.forEach(function (m) {
      methods[m.name] = m;
      var o = document.createElement('option');
      o.value = m.name;
      o.textContent = m.name + (m.name === info.default_method ? ' (default: most faithful here)' : '') +
        (m.marks.length ? ' (marked)' : '');
      o.title = m.description;
      o.selected = m.name === info.default_method;
      select.appendChild(o);
    });
    describeMethod();
    $('limits').textContent += ' Up to ' + (maxBytes / 1048576).toFixed(maxBytes % 1048576 ? 1 : 0) + ' MB.';
  }).catch(function () { $('model').textContent = 'The server did not answer.'; });

  function send(blob, target) {
    if (maxBytes && blob.size > maxBytes) {
      error('The file is ' + (blob.size / 1048576).toFixed(1) + ' MB; the limit is ' +
            (maxBytes / 1048576).toFixed(1) + ' MB.');
      return Promise.resolve();
    }
    var form = new FormData();
    form.append('file', blob, blob.name || 'image.png');
    if (target) { form.append('target', target); }
    form.append('method', $('method').value);
    error('');
    status(target ? 'Explaining ' + target + '…' : 'Predicting…');
    return fetch('api/predict', {method: 'POST', body: form}).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) { error(detail(body, r)); return; }
        current = blob;
        currentTarget = target;
        show(body);
        status('');
      });
    }).catch(function (e) { error('The server did not answer: ' + e); });
  }

  function show(body) {
    $('input-image').src = body.image;
    $('overlay').src = body.overlay.image;
    var o = body.overlay;
    $('overlay-caption').textContent = o.method + ' for ' + o['class'] + (o.layer ? ' (layer ' + o.layer + ')' : '');
    trust($('trust'), o);
    var list = $('predictions');
    list.textContent = '';
    body.predictions.forEach(function (p) {
      var li = document.createElement('li'), b = document.createElement('button');
      b.type = 'button';
      b.dataset.cls = p['class'];
      b.setAttribute('aria-pressed', String(p['class'] === body.overlay['class']));
      var name = document.createElement('span'), bar = document.createElement('span'),
          fill = document.createElement('span'), pct = document.createElement('span');
      name.className = 'name'; name.textContent = p['class'];
      bar.className = 'bar'; fill.style.width = (100 * p.probability).toFixed(1) + '%'; bar.appendChild(fill);
      pct.className = 'pct'; pct.textContent = (100 * p.probability).toFixed(1) + '%';
      b.append(name, bar, pct);
      b.addEventListener('click', function () { if (current) { send(current, p['class']); } });
      li.appendChild(b);
      list.appendChild(li);
    });
    $('result').hidden = false;
  }

  // How far to trust the method: its measured deletion AUC against random order, and the checks it fails.
  function trust(el, m) {
    el.textContent = (m.marks.length ? 'Careful: ' + m.marks.join('; ') + '. ' : '') +
      'Faithfulness: ' + m.measurement + '.';
    el.className = m.marks.length ? 'marked' : (m.measurement.indexOf('not measured') === 0 ? '' : 'good');
  }
  function describeMethod() {
    var m = methods[$('method').value];
    if (m) { $('method-trust').textContent = m.description; }
  }
  $('method').addEventListener('change', function () {
    describeMethod();
    if (current) { send(current, currentTarget); }
  });

  function choose(file, truth) {
    if (!file) { return; }
    $('truth').hidden = !truth;
    $('truth').textContent = truth || '';
    send(file, null);
  }

  $('file').addEventListener('change', function (e) { choose(e.target.files[0], null); });
  var drop = $('drop');
  ['dragenter', 'dragover'].forEach(function (t) {
    drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.add('over'); });
  });
  ['dragleave', 'drop'].forEach(function (t) {
    drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.remove('over'); });
  });
  drop.addEventListener('drop', function (e) { choose(e.dataTransfer.files[0], null); });

  $('random').addEventListener('click', function () {
    error('');
    status('Picking a test image…');
    fetch('api/random').then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) { error(detail(body, r)); return; }
        return fetch(body.image).then(function (x) { return x.blob(); }).then(function (blob) {
          choose(blob, 'True class: ' + body.label + ' (' + body.source + ')');
        });
      });
    }).catch(function (e) { error('The server did not answer: ' + e); });
  });
})();
</script>
</body>
</html>
"""
