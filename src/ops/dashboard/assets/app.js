// Herald dashboard: renders the JSON views of /dashboard/api/ and fetches
// them again when the server's event stream says something changed.
// Plain DOM, no library; the helpers are in ui.js.
'use strict';
(() => {
  const { h, pill, chips, id, table, panel, empty, human, relative, local, when, nowSecs } = window.herald;
  const VIEWS = ['overview', 'agents', 'entries', 'federation', 'findings'];
  const main = document.getElementById('main');
  const ui = {
    view: 'overview',
    entries: { q: '', field: 'any', page: 0 },
    results: null,
    busy: false,
    again: false,
    timer: null,
    seen: new Set(), // entry IDs already shown, to flash new ones
  };
  // The server's SVID lifetimes for entries that say 0 (from the overview).
  const defaults = { x509: 0, jwt: 0 };

  // --- data ---------------------------------------------------------------
  async function api(view, params) {
    const qs = params ? `?${new URLSearchParams(params)}` : '';
    const r = await fetch(`/dashboard/api/${view}${qs}`, { cache: 'no-store' });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `${view}: HTTP ${r.status}`);
    return body;
  }

  async function refresh() {
    if (ui.busy) {
      ui.again = true;
      return;
    }
    ui.busy = true;
    const started = performance.now();
    try {
      const view = ui.view;
      const params = view === 'entries' ? { q: ui.entries.q, field: ui.entries.field, page: ui.entries.page } : null;
      const [overview, data] = await Promise.all([api('overview'), view === 'overview' ? null : api(view, params)]);
      header(overview);
      if (view === ui.view) {
        ui.results.replaceChildren(RENDER[view](data || overview));
      }
      banner(null);
      const took = Math.round(performance.now() - started);
      document.getElementById('updated').textContent = `${new Date().toLocaleTimeString()} (${took} ms)`;
      document.body.dataset.updated = String(Date.now());
    } catch (e) {
      banner(`Cannot load the ${ui.view} view: ${e.message}`);
    } finally {
      ui.busy = false;
      if (ui.again) {
        ui.again = false;
        refresh();
      }
    }
  }
  // Changes come in bursts: one fetch per burst.
  function soon() {
    clearTimeout(ui.timer);
    ui.timer = setTimeout(refresh, 80);
  }
  function banner(text) {
    const b = document.getElementById('banner');
    b.hidden = !text;
    b.textContent = text || '';
  }

  function header(o) {
    defaults.x509 = o.settings.default_x509_svid_ttl;
    defaults.jwt = o.settings.default_jwt_svid_ttl;
    document.getElementById('td').textContent = o.trust_domain;
    document.title = `Herald · ${o.trust_domain}`;
    const c = o.counts;
    const set = (el, text, cls) => {
      const e = document.getElementById(el);
      e.textContent = text;
      e.className = `count ${cls || ''}`;
    };
    set('n-agents', c.agents);
    set('n-entries', c.entries);
    set('n-federation', c.relationships || '');
    const f = c.findings;
    set('n-findings', f.error || f.warning || '', f.error ? 'bad' : f.warning ? 'warn' : '');
  }

  // --- overview -----------------------------------------------------------
  function card(cls, title, big, ...sub) {
    return h('div', { class: `card ${cls}` }, h('h3', {}, title), h('div', { class: 'big' }, big), sub.filter(Boolean).map((s) => h('div', { class: 'sub' }, s)));
  }
  function bar(share, cls) {
    const fill = h('span');
    fill.style.width = `${Math.round(share * 100)}%`;
    return h('div', { class: `bar ${cls || ''}` }, fill);
  }

  function overview(o) {
    const b = o.bundle;
    const share = b.agents_connected ? b.agents_acked / b.agents_connected : 1;
    const ackCls = !b.agents_connected ? 'info' : share === 1 ? 'ok' : 'warn';
    const c = o.counts;
    const f = c.findings;
    const budget = o.outage_budget;
    const cards = h('div', { class: 'cards' },
      card('info', 'Trust domain', o.trust_domain, `CA lifetime ${human(o.settings.ca_ttl)} · X509-SVID ${human(o.settings.default_x509_svid_ttl)} · JWT-SVID ${human(o.settings.default_jwt_svid_ttl)}`),
      card(ackCls, 'Bundle', `#${b.sequence}`,
        b.agents_connected ? `acknowledged by ${b.agents_acked} of ${b.agents_connected} connected agent${b.agents_connected === 1 ? '' : 's'} (${Math.round(share * 100)}%)` : 'no agent connected',
        b.agents_connected ? bar(share, share === 1 ? '' : 'warn') : null),
      card(c.agents_connected ? 'ok' : 'warn', 'Agents', `${c.agents_connected} / ${c.agents}`, 'connected / attested', c.agents_banned ? `${c.agents_banned} banned` : null),
      card('info', 'Entries', c.entries, 'registration entries'),
      budget
        ? card(budget.seconds < 300 ? 'bad' : budget.limited_by_authority ? 'warn' : 'ok', 'Outage budget', human(budget.seconds),
          `workloads keep valid SVIDs until ${local(budget.until)} if this server stopped now`,
          budget.limited_by_authority ? 'limited by the active X.509 authority’s expiry' : `half the shortest X509-SVID lifetime (${human(budget.shortest_x509_svid_ttl)})`,
          budget.earliest_agent ? h('span', {}, `first agent SVID expires ${relative(budget.earliest_agent.svid_expires_at)}: `, id(budget.earliest_agent.id)) : null)
        : card('idle', 'Outage budget', '—', 'no entries: no workload SVID to lose'),
      card(f.error ? 'bad' : f.warning ? 'warn' : 'ok', 'Findings',
        f.error ? `${f.error} error${f.error === 1 ? '' : 's'}` : f.warning ? `${f.warning} warning${f.warning === 1 ? '' : 's'}` : 'All clear',
        f.error ? `${f.warning} warning(s) · ${f.info} info` : `${f.info} info`,
        h('a', { href: '#/findings' }, f.error + f.warning + f.info ? 'what herald check finds' : 'herald check finds nothing')),
    );
    const parts = [cards, rotation(o)];
    if (b.lagging.length) parts.push(panel('Agents behind on the bundle', `${b.lagging.length}`, h('div', { class: 'pad' }, chips(b.lagging))));
    if (o.upstream.length) {
      parts.push(panel('Upstream certificates', null, table(['Serial', 'Kind', 'Expires'], o.upstream.map((u) => h('tr', {}, h('td', {}, id(u.serial)), h('td', {}, u.root ? 'root' : 'intermediate'), h('td', {}, when(u.not_after)))))));
    }
    return h('div', {}, parts);
  }

  const STATE = { active: 'ok', prepared: 'info', old: 'idle' };
  function rotation(o) {
    const kinds = ['x509', 'jwt'].filter((k) => o.authorities.some((a) => a.kind === k));
    const now = o.now;
    const body = kinds.map((kind) => {
      const list = o.authorities.filter((a) => a.kind === kind).sort((a, b) => a.not_before - b.not_before);
      const plan = o.schedule.find((s) => s.kind === kind);
      const times = list.flatMap((a) => [a.not_before, a.not_after]).concat([now], plan ? [plan.prepare_at, plan.activate_at] : []);
      const lo = Math.min(...times);
      const hi = Math.max(...times);
      const at = (t) => `${((t - lo) / Math.max(1, hi - lo)) * 100}%`;
      const mark = (t, cls, label) => {
        const m = h('div', { class: `tl-mark ${cls}`, title: `${label}: ${local(t)}` }, h('span', {}, label));
        m.style.left = at(t);
        return m;
      };
      const rows = list.map((a, i) => {
        const b = h('div', { class: `tl-bar ${a.tainted ? 'tainted' : a.state}`, title: `${a.state} ${kind} authority ${a.key_id}: ${local(a.not_before)} → ${local(a.not_after)}` });
        b.style.left = at(a.not_before);
        b.style.width = `calc(${at(a.not_after)} - ${at(a.not_before)})`;
        const marks = i === 0 ? [mark(now, 'now', 'now')] : [];
        if (a.state === 'active' && plan) {
          if (plan.prepare_at > now && !list.some((x) => x.state === 'prepared')) marks.push(mark(plan.prepare_at, 'prepare', 'prepare next'));
          if (plan.activate_at > now) marks.push(mark(plan.activate_at, 'activate', 'activate next'));
        }
        return [
          h('div', { class: 'tl-label' }, pill(a.tainted ? 'bad' : STATE[a.state] || 'idle', a.tainted ? `${a.state} · tainted` : a.state), h('span', { class: 'mono', title: a.key_id }, a.key_id.slice(0, 8))),
          h('div', { class: 'tl-track' }, b, marks),
        ];
      });
      return h('div', { class: 'tl-kind' }, h('h4', {}, kind === 'x509' ? 'X.509 authorities' : 'JWT authorities'), rows,
        h('div', { class: 'tl-axis' }, h('span', {}, local(lo)), h('span', {}, local(hi))));
    });
    const detail = table(['Kind', 'State', 'Key', 'Valid from', 'Expires', 'Bundle'], o.authorities.map((a) =>
      h('tr', { 'data-id': a.id }, h('td', {}, a.kind === 'x509' ? 'X.509' : 'JWT'), h('td', {}, pill(a.tainted ? 'bad' : STATE[a.state] || 'idle', a.tainted ? `${a.state} · tainted` : a.state)),
        h('td', {}, id(a.key_id)), h('td', {}, when(a.not_before)), h('td', {}, when(a.not_after, a.not_after - nowSecs() < 3600 ? 't-bad' : '')),
        h('td', {}, a.bundle_sequence ? `#${a.bundle_sequence}` : h('span', { class: 'muted', title: 'in the bundle since the first one' }, 'first')))));
    const next = o.schedule.map((s) => `${s.kind === 'x509' ? 'X.509' : 'JWT'}: prepare ${relative(s.prepare_at)}, activate ${relative(s.activate_at)}`).join(' · ');
    return panel('Authorities and rotation', next,
      h('div', { class: 'timeline' }, body),
      h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'l-prepared' }), 'prepared (in the bundle, not signing)'), h('span', {}, h('i', { class: 'l-active' }), 'active (signing)'),
        h('span', {}, h('i', { class: 'l-old' }), 'old (in the bundle until it expires)'), h('span', {}, h('i', { class: 'l-now' }), 'now'), h('span', {}, h('i', { class: 'l-next' }), 'next rotation step')),
      detail);
  }

  // --- agents -------------------------------------------------------------
  function agents(d) {
    if (!d.agents.length) return panel('Agents', null, empty('No agent has attested yet. Create a join token with herald token create.'));
    const rows = d.agents.map((a) => {
      const status = a.banned ? ['bad', 'banned'] : a.connected ? ['ok', 'connected'] : ['', 'offline'];
      const left = a.svid_expires_at - nowSecs();
      const bundle = !a.connected ? h('span', { class: 'muted' }, '—')
        : a.bundle_acked ? pill('ok', `✓ #${a.acked_bundle_sequence}`, 'holds the current bundle')
          : pill('warn', a.acked_bundle_sequence ? `behind: #${a.acked_bundle_sequence}` : 'not acknowledged', `the current bundle is #${d.bundle_sequence}`);
      return h('tr', { 'data-id': a.id },
        h('td', {}, h('span', { class: 'status' }, h('span', { class: `dot ${status[0]}` }), status[1])),
        h('td', {}, id(a.id, true), h('span', { class: 'line2' }, `${a.attestation_type} · SVID serial ${a.serial.slice(0, 16)}`)),
        h('td', {}, chips(a.selectors)),
        h('td', {}, when(a.svid_expires_at, left < 0 ? 't-bad' : left < 600 ? 't-warn' : '')),
        h('td', {}, a.connected ? h('span', { class: 't-ok' }, 'now') : when(a.last_seen_at)),
        h('td', {}, bundle),
        h('td', {}, a.entries === null ? h('span', { class: 'muted' }, '—') : a.entries));
    });
    const connected = d.agents.filter((a) => a.connected).length;
    return panel('Agents', `${d.agents.length} attested · ${connected} connected · current bundle #${d.bundle_sequence}`,
      table(['Status', 'Agent', 'Selectors', 'SVID expires', 'Last seen', 'Bundle', 'Entries'], rows));
  }

  // --- entries ------------------------------------------------------------
  function entriesToolbar() {
    const q = h('input', { type: 'search', id: 'q', placeholder: 'Search by SPIFFE ID, selector or parent…', value: ui.entries.q, autocomplete: 'off', 'aria-label': 'search entries' });
    let typing = null;
    q.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        ui.entries.q = q.value.trim();
        ui.entries.page = 0;
        go(true);
      }, 200);
    });
    const field = h('select', { id: 'field', 'aria-label': 'search in' },
      [['any', 'Any field'], ['spiffe_id', 'SPIFFE ID'], ['selector', 'Selector'], ['parent', 'Parent']].map(([v, t]) => h('option', { value: v, selected: ui.entries.field === v }, t)));
    field.addEventListener('change', () => {
      ui.entries.field = field.value;
      ui.entries.page = 0;
      go(true);
    });
    return h('div', { class: 'toolbar' }, q, field);
  }
  function pager(d) {
    const page = (n) => () => {
      ui.entries.page = n;
      go(true);
    };
    const first = d.matched ? d.page * d.page_size + 1 : 0;
    const last = Math.min(d.matched, (d.page + 1) * d.page_size);
    return h('div', { class: 'pager' },
      `${first}–${last} of ${d.matched}${d.q ? ` matching (${d.total} in all)` : ''}`,
      h('button', { id: 'prev', disabled: d.page === 0, onclick: page(d.page - 1) }, '‹ Prev'),
      `page ${d.pages ? d.page + 1 : 0} of ${d.pages}`,
      h('button', { id: 'next', disabled: d.page + 1 >= d.pages, onclick: page(d.page + 1) }, 'Next ›'));
  }
  function ttl(secs, dflt) {
    return secs ? human(secs) : `${human(dflt)} (default)`;
  }
  function entries(d) {
    const known = ui.seen;
    const first = known.size === 0;
    const rows = d.entries.map((e) => {
      const fresh = !first && !known.has(e.id);
      known.add(e.id);
      const flags = [e.admin ? pill('info', 'admin') : null, e.downstream ? pill('warn', 'downstream') : null, e.expires_at ? pill('idle', `expires ${relative(e.expires_at)}`) : null];
      return h('tr', { 'data-id': e.id, class: fresh ? 'fresh' : null },
        h('td', {}, id(e.spiffe_id, true), ' ', flags, h('span', { class: 'line2 mono' }, e.id), e.hint ? h('span', { class: 'line2' }, `hint: ${e.hint}`) : null,
          e.dns_names.length ? h('span', { class: 'line2' }, `DNS: ${e.dns_names.join(', ')}`) : null),
        h('td', {}, id(e.parent_id)),
        h('td', {}, chips(e.selectors)),
        h('td', {}, h('span', { class: 'line2' }, `X.509 ${ttl(e.x509_svid_ttl, defaults.x509)}`), h('span', { class: 'line2' }, `JWT ${ttl(e.jwt_svid_ttl, defaults.jwt)}`)),
        h('td', {}, chips(e.federates_with)),
        h('td', {}, e.agents.length ? h('div', { class: 'chips' }, e.agents.map((a) => h('span', { class: 'chip', title: a.connected ? 'connected' : 'not connected' }, h('span', { class: `dot ${a.connected ? 'ok' : ''}` }), a.id))) : h('span', { class: 'muted' }, 'none')),
        h('td', {}, when(e.created_at)));
    });
    const body = rows.length ? table(['SPIFFE ID', 'Parent', 'Selectors', 'SVID lifetime', 'Federates with', 'Agents', 'Created'], rows)
      : empty(d.total ? 'No entry matches this search.' : 'No registration entries yet. Create one with herald entry create.');
    return h('div', {}, h('div', { class: 'toolbar' }, pager(d)), panel('Registration entries', null, body));
  }

  // --- federation ---------------------------------------------------------
  function federation(d) {
    const STATUS = { ok: ['ok', 'ok'], failing: ['bad', 'failing'], pending: ['idle', 'not fetched yet'] };
    const rels = d.relationships.map((r) => {
      const [cls, text] = STATUS[r.status] || ['idle', r.status];
      return h('tr', { 'data-id': r.trust_domain },
        h('td', {}, pill(cls, text), r.consecutive_failures ? h('span', { class: 'line2 t-bad' }, `${r.consecutive_failures} failure(s) in a row`) : null),
        h('td', {}, id(r.trust_domain, true)),
        h('td', {}, id(r.bundle_endpoint_url), h('span', { class: 'line2' }, r.profile, r.endpoint_spiffe_id ? ` · ${r.endpoint_spiffe_id}` : '')),
        h('td', {}, when(r.last_success_at)),
        h('td', {}, when(r.last_attempt_at)),
        h('td', {}, when(r.next_refresh_at)),
        h('td', {}, r.bundle_sequence ? `#${r.bundle_sequence}` : h('span', { class: 'muted' }, 'none')),
        h('td', {}, r.entries),
        h('td', {}, r.last_error ? h('span', { class: 'error-text' }, r.last_error) : h('span', { class: 'muted' }, '—')));
    });
    const bundles = d.bundles.map((b) => h('tr', {}, h('td', {}, id(b.trust_domain, true)), h('td', {}, `#${b.sequence}`),
      h('td', {}, b.relationship ? pill('ok', 'refreshed') : pill('idle', 'set by hand')), h('td', {}, b.entries)));
    return h('div', {},
      panel('Federation relationships', `${d.relationships.length}`, rels.length
        ? table(['Status', 'Trust domain', 'Bundle endpoint', 'Last refresh', 'Last attempt', 'Next refresh', 'Bundle', 'Entries', 'Error'], rels)
        : empty('No federation relationship. Add one with herald federation create.')),
      panel('Federated bundles', `${d.bundles.length}`, bundles.length ? table(['Trust domain', 'Sequence', 'Source', 'Entries'], bundles) : empty('No foreign bundle held.')));
  }

  // --- findings -----------------------------------------------------------
  function object(o) {
    switch (o.kind) {
      case 'entry': return `entry ${o.id} (${o.spiffe_id})`;
      case 'agent': return `agent ${o.id}`;
      case 'trust_domain': return `trust domain ${o.name}`;
      case 'authority': return `${o.state} ${o.authority_kind} authority ${o.id}`;
      case 'upstream_certificate': return `upstream certificate (serial ${o.serial})`;
      case 'server': return `server of ${o.trust_domain}`;
      default: return o.kind;
    }
  }
  function findings(d) {
    const SEV = { error: 'bad', warning: 'warn', info: 'info' };
    const c = d.counts;
    const note = `${c.error} error(s) · ${c.warning} warning(s) · ${c.info} info — the checks of herald check --socket`;
    if (!d.findings.length) return panel('Findings', note, empty('✓ All checks pass: herald check finds nothing.', true));
    return panel('Findings', note, d.findings.map((f) =>
      h('div', { class: `finding ${f.severity}` },
        h('div', { class: 'head' }, pill(SEV[f.severity] || 'idle', f.severity), h('code', {}, f.check), h('span', { class: 'obj' }, object(f.object))),
        h('div', {}, f.message),
        h('div', { class: 'fix' }, h('b', {}, 'Fix: '), f.remedy))));
  }

  const RENDER = { overview, agents, entries, federation, findings };

  // --- navigation ---------------------------------------------------------
  function parseHash() {
    const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
    const view = VIEWS.includes(path) ? path : 'overview';
    if (view === 'entries') {
      const p = new URLSearchParams(query || '');
      ui.entries = { q: p.get('q') || '', field: p.get('field') || 'any', page: Math.max(0, Number(p.get('page')) || 0) };
    }
    return view;
  }
  function hash() {
    if (ui.view !== 'entries') return `#/${ui.view}`;
    const p = new URLSearchParams();
    if (ui.entries.q) p.set('q', ui.entries.q);
    if (ui.entries.field !== 'any') p.set('field', ui.entries.field);
    if (ui.entries.page) p.set('page', ui.entries.page);
    const qs = p.toString();
    return `#/entries${qs ? `?${qs}` : ''}`;
  }
  // Entries search state changed in the page: record it in the URL.
  function go() {
    history.replaceState(null, '', hash());
    refresh();
  }
  function mount() {
    const view = parseHash();
    const changed = view !== ui.view || !ui.results;
    ui.view = view;
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
    if (changed) {
      ui.seen = new Set();
      ui.results = h('div', { id: 'results' }, h('p', { class: 'muted' }, 'Loading…'));
      main.replaceChildren(view === 'entries' ? entriesToolbar() : '', ui.results);
    }
    refresh();
  }
  window.addEventListener('hashchange', mount);

  // --- live updates -------------------------------------------------------
  function live(state, text) {
    const el = document.getElementById('live');
    el.dataset.state = state;
    document.getElementById('live-text').textContent = text;
  }
  let polling = null;
  function listen() {
    const events = new EventSource('/dashboard/api/events');
    events.addEventListener('hello', () => {
      live('live', 'live');
      clearInterval(polling);
      polling = null;
      soon();
    });
    events.addEventListener('change', soon);
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) {
        // Refused (too many open streams) or the server is gone: poll,
        // and try the stream again later.
        live('polling', 'polling');
        if (!polling) polling = setInterval(refresh, 5000);
        setTimeout(listen, 15000);
      } else {
        live('reconnecting', 'reconnecting');
      }
    };
  }

  mount();
  listen();
})();
