// Herald dashboard: the helpers every view uses, building DOM and writing
// times. Every value from the server goes in as text (never as HTML):
// SPIFFE IDs, selectors and hints are other people's input.
'use strict';
window.herald = (() => {
  // --- DOM ----------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const pill = (cls, text, title) => h('span', { class: `pill ${cls}`, title }, text);
  const chips = (items, cls) =>
    items && items.length ? h('div', { class: 'chips' }, items.map((i) => h('span', { class: `chip ${cls || ''}` }, i))) : h('span', { class: 'muted' }, '—');
  const id = (text, strong) => h('span', { class: `id${strong ? ' strong' : ''}` }, text);
  const table = (head, rows) =>
    h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, head.map((t) => h('th', {}, t)))), h('tbody', {}, rows)));
  const panel = (title, note, ...body) => h('section', { class: 'panel' }, h('h2', {}, title, note ? h('span', { class: 'muted' }, note) : null), body);
  const empty = (text, good) => h('div', { class: `empty${good ? ' good' : ''}` }, text);

  // --- time ---------------------------------------------------------------
  const nowSecs = () => Date.now() / 1000;
  // Two units from the largest, as herald check writes durations: 1h 30m.
  function human(secs) {
    secs = Math.max(0, Math.round(secs));
    if (!secs) return '0s';
    const out = [];
    let units = 0;
    for (const [u, n] of [[86400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']]) {
      if (units || secs >= u) {
        if (secs >= u) out.push(`${Math.floor(secs / u)}${n}`);
        secs %= u;
        units += 1;
      }
      if (units === 2) break;
    }
    return out.join(' ');
  }
  function relative(ts) {
    const d = ts - nowSecs();
    if (Math.abs(d) < 5) return 'just now';
    return d > 0 ? `in ${human(d)}` : `${human(-d)} ago`;
  }
  function local(ts) {
    const d = new Date(ts * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }
  // A time as "5m ago" over its local time; kept current by tick().
  function when(ts, cls) {
    if (!ts) return h('span', { class: 'muted' }, '—');
    return h('span', {}, h('time', { 'data-ts': ts, class: cls, datetime: new Date(ts * 1000).toISOString(), title: new Date(ts * 1000).toString() }, relative(ts)), h('span', { class: 'abs' }, local(ts)));
  }
  function tick() {
    for (const t of document.querySelectorAll('time[data-ts]')) t.textContent = relative(Number(t.dataset.ts));
  }
  setInterval(tick, 5000);

  return { h, pill, chips, id, table, panel, empty, human, relative, local, when, nowSecs };
})();
