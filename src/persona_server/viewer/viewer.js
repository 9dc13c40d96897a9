// The `persona view` page: a user's exported graph (the records of `persona export`, embedded
// in this page) drawn with Cytoscape.js. Derived memories float above the event-time chain of
// episodes (the timeline), in one band per type, at the time they were mentioned. Long chains
// are paged: the current page's episodes are drawn one by one, every other page as one node.
// All user text reaches the page through textContent, never as markup.
(function () {
  'use strict';

  var PAGE = 300; // episodes drawn one by one
  var WINDOW = 120; // episodes in the first view of a page
  var DX = 14; // timeline spacing of episodes
  var PAGE_SLOT = 190; // width of a collapsed page
  var LANE_DY = 30;
  var MIN_GAP = 110; // about a label's width
  var GRID_COLS = 5;
  var GRID_DX = 34;
  var BAND_START = -120;
  var BAND_GAP = 70;
  var BAND_ORDER = ['entity', 'fact', 'psyche', 'goal'];
  var COLORS = {
    episode: '#64748b', entity: '#f59e0b', fact: '#10b981',
    psyche: '#8b5cf6', goal: '#ef4444', page: '#334155'
  };
  var TYPE_NAMES = { episode: 'Episodes', entity: 'Entities', fact: 'Facts', psyche: 'Psyche', goal: 'Goals' };
  var ORDER = ['entity', 'fact', 'psyche', 'goal', 'episode'];

  var data = JSON.parse(document.getElementById('persona-data').textContent);
  var header = data.header || {};
  var nodes = new Map();
  var edges = [];
  // Optional fields of the file format, filled in once so that the rest can rely on them.
  var DEFAULTS = {
    episode: { speaker: '', role: 'unspecified', summary: '' },
    entity: { aliases: [], description: '' },
    fact: { object_id: '', object_value: '' },
    psyche: { key: '' },
    goal: { key: '' }
  };
  function normalize(n) {
    n.metadata = n.metadata || {};
    var detail = n[n.type] = n[n.type] || {};
    Object.keys(DEFAULTS[n.type] || {}).forEach(function (k) {
      if (detail[k] === undefined) detail[k] = DEFAULTS[n.type][k];
    });
    if (n.type === 'episode') {
      detail.extraction = detail.extraction || { state: 'pending', attempts: 0 };
      detail.extraction.last_error = detail.extraction.last_error || '';
    }
    return n;
  }
  data.records.forEach(function (r) {
    if (r.record === 'node') nodes.set(r.id, normalize(r));
    else if (r.record === 'edge') edges.push(r);
  });

  // --- adjacency ---------------------------------------------------------------------------
  var nextOf = new Map();
  var hasPrev = new Set();
  var provenance = new Map(); // derived -> episodes
  var derivedOf = new Map(); // episode -> derived
  var mentions = new Map(); // episode -> entities
  var mentionedIn = new Map(); // entity -> episodes
  var factsOf = new Map(); // entity -> facts
  function push(map, key, value) {
    var list = map.get(key);
    if (!list) { list = []; map.set(key, list); }
    list.push(value);
  }
  edges.forEach(function (e) {
    if (e.type === 'NEXT') { nextOf.set(e.from, e.to); hasPrev.add(e.to); }
    else if (e.type === 'DERIVED_FROM') { push(provenance, e.from, e.to); push(derivedOf, e.to, e.from); }
    else if (e.type === 'MENTIONS') { push(mentions, e.from, e.to); push(mentionedIn, e.to, e.from); }
    else { push(factsOf, e.to, e.from); }
  });

  function timeOf(n) { return n.occurred_at || n.recorded_at || ''; }

  // The chain: follow NEXT from its head; anything a broken file leaves out goes last, by time.
  var episodes = [];
  nodes.forEach(function (n) { if (n.type === 'episode') episodes.push(n); });
  var chain = [];
  var placed = new Set();
  episodes.filter(function (n) { return !hasPrev.has(n.id); })
    .sort(function (a, b) { return timeOf(a) < timeOf(b) ? -1 : timeOf(a) > timeOf(b) ? 1 : 0; })
    .forEach(function (head) {
      for (var id = head.id; id && !placed.has(id) && nodes.has(id); id = nextOf.get(id)) {
        placed.add(id);
        chain.push(id);
      }
    });
  episodes.filter(function (n) { return !placed.has(n.id); })
    .sort(function (a, b) { return timeOf(a) < timeOf(b) ? -1 : 1; })
    .forEach(function (n) { chain.push(n.id); });
  var chainIndex = new Map();
  chain.forEach(function (id, i) { chainIndex.set(id, i); });
  var pages = Math.max(1, Math.ceil(chain.length / PAGE));

  // Where a derived memory sits in time: the median of its episodes in the chain, counting
  // only those on the open page when it has any there (so a memory mentioned all along is
  // drawn with every page it was mentioned on).
  var provIndex = new Map();
  nodes.forEach(function (n) {
    if (n.type === 'episode') return;
    provIndex.set(n.id, (provenance.get(n.id) || []).map(function (e) { return chainIndex.get(e); })
      .filter(function (i) { return i !== undefined; }).sort(function (a, b) { return a - b; }));
  });
  function median(list) { return list.length ? list[Math.floor((list.length - 1) / 2)] : 0; }
  var anchor = new Map();
  function placeInTime() {
    var start = state.page * PAGE;
    var end = start + PAGE;
    provIndex.forEach(function (idx, id) {
      var here = idx.filter(function (i) { return i >= start && i < end; });
      anchor.set(id, median(here.length ? here : idx));
    });
  }

  // --- labels and sizes --------------------------------------------------------------------
  function short(text, max) {
    text = String(text || '').replace(/\s+/g, ' ').trim();
    return text.length > max ? text.slice(0, max - 1) + '\u2026' : text;
  }
  function labelOf(n) {
    if (n.type === 'entity') return n.entity.name;
    if (n.type === 'fact') return short(n.text, 30);
    if (n.type === 'episode') return '';
    return short(n.text, 28);
  }
  function sizeOf(n) {
    if (n.type === 'episode') return 11;
    if (typeof n.strength === 'number') return 12 + 34 * Math.max(0, Math.min(1, n.strength));
    return Math.min(56, 14 + 7 * Math.log2(Math.max(1, n.mention_count || 1)));
  }
  function day(iso) {
    if (!iso) return '';
    var d = new Date(iso);
    return d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
  }
  function when(iso) {
    if (!iso) return '\u2014';
    return iso.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC');
  }

  // --- layout ------------------------------------------------------------------------------
  var state = { page: pages - 1, hiddenTypes: new Set(), showHistory: true, selected: null, matches: [] };

  function pageOf(i) { return Math.floor(i / PAGE); }
  function slotX(i) {
    var p = pageOf(i);
    var open = state.page;
    var openStart = open * PAGE_SLOT;
    if (p < open) return p * PAGE_SLOT;
    if (p === open) return openStart + PAGE_SLOT + (i - open * PAGE) * DX;
    var openWidth = (Math.min(chain.length, (open + 1) * PAGE) - open * PAGE) * DX;
    return openStart + PAGE_SLOT + openWidth + (p - open) * PAGE_SLOT;
  }
  function pageX(p) {
    var first = p * PAGE;
    return p < state.page ? slotX(first) + PAGE_SLOT / 2 : slotX(first) - PAGE_SLOT / 2 + PAGE_SLOT;
  }

  function elements() {
    placeInTime();
    var els = [];
    var present = new Set();
    var open = state.page;
    var start = open * PAGE;
    var end = Math.min(chain.length, start + PAGE);
    // Derived memories: one band per type above the timeline, each at the time it was said.
    // On the open page they spread over lanes (rows) so that labels do not pile up; above a
    // collapsed page they stack in a small grid.
    var base = BAND_START;
    BAND_ORDER.forEach(function (type) {
      var open = [];
      var closed = {};
      nodes.forEach(function (n) {
        if (n.type !== type) return;
        var i = anchor.get(n.id);
        if (!chain.length || pageOf(i) === state.page) open.push({ n: n, x: chain.length ? slotX(i) : 0 });
        else (closed[pageOf(i)] = closed[pageOf(i)] || []).push(n);
      });
      var rows = 0;
      open.sort(function (a, b) { return a.x - b.x || (a.n.id < b.n.id ? -1 : 1); });
      var lastX = [];
      open.forEach(function (item) {
        var lane = 0;
        while (lane < lastX.length && lastX[lane] > item.x - MIN_GAP) lane++;
        lastX[lane] = item.x;
        rows = Math.max(rows, lane + 1);
        place(item.n, item.x, base - lane * LANE_DY);
      });
      Object.keys(closed).forEach(function (p) {
        var list = closed[p].sort(function (a, b) { return anchor.get(a.id) - anchor.get(b.id) || (a.id < b.id ? -1 : 1); });
        var x0 = pageX(Number(p)) - (GRID_COLS - 1) * GRID_DX / 2;
        list.forEach(function (n, k) {
          place(n, x0 + (k % GRID_COLS) * GRID_DX, base - Math.floor(k / GRID_COLS) * LANE_DY);
        });
        rows = Math.max(rows, Math.ceil(list.length / GRID_COLS));
      });
      base -= Math.max(rows, 1) * LANE_DY + BAND_GAP;
    });
    function place(n, x, y) {
      present.add(n.id);
      els.push({
        group: 'nodes',
        data: { id: n.id, type: n.type, label: labelOf(n), size: sizeOf(n), invalid: n.invalid_at ? 1 : 0 },
        position: { x: x, y: y },
        classes: n.invalid_at ? 'history' : ''
      });
    }
    // The open page's episodes, with a date under the first one of each day.
    var lastDay = '';
    for (var i = start; i < end; i++) {
      var ep = nodes.get(chain[i]);
      present.add(ep.id);
      els.push({
        group: 'nodes',
        data: { id: ep.id, type: 'episode', label: '', size: sizeOf(ep), invalid: 0 },
        position: { x: slotX(i), y: 0 }
      });
      var d = day(timeOf(ep));
      if (d !== lastDay) {
        lastDay = d;
        els.push({
          group: 'nodes', data: { id: 'tick:' + i, type: 'tick', label: d },
          position: { x: slotX(i), y: 34 }, selectable: false, grabbable: false, classes: 'tick'
        });
      }
      if (i > start) {
        els.push({ group: 'edges', data: { id: 'next:' + i, source: chain[i - 1], target: ep.id, type: 'NEXT' } });
      }
    }
    // Every other page as one node on the timeline.
    for (var p = 0; p < pages; p++) {
      if (p === open) continue;
      var a = nodes.get(chain[p * PAGE]);
      var b = nodes.get(chain[Math.min(chain.length, (p + 1) * PAGE) - 1]);
      var count = Math.min(chain.length, (p + 1) * PAGE) - p * PAGE;
      els.push({
        group: 'nodes',
        data: { id: 'page:' + p, type: 'page', page: p, size: 30,
          label: count + ' episodes\n' + day(timeOf(a)) + ' \u2013 ' + day(timeOf(b)) },
        position: { x: pageX(p), y: 0 }, classes: 'page'
      });
    }
    // Edges whose ends are both drawn; the chain through collapsed pages links their nodes.
    var k = 0;
    edges.forEach(function (e) {
      if (e.type === 'NEXT') return;
      if (present.has(e.from) && present.has(e.to)) {
        els.push({ group: 'edges', data: { id: 'e' + (k++), source: e.from, target: e.to, type: e.type } });
      }
    });
    if (open > 0) {
      els.push({ group: 'edges', data: { id: 'next:before', source: 'page:' + (open - 1), target: chain[start], type: 'NEXT' } });
    }
    if (open < pages - 1) {
      els.push({ group: 'edges', data: { id: 'next:after', source: chain[end - 1], target: 'page:' + (open + 1), type: 'NEXT' } });
    }
    for (var q = 0; q < pages - 1; q++) {
      if (q !== open && q + 1 !== open) {
        els.push({ group: 'edges', data: { id: 'next:page' + q, source: 'page:' + q, target: 'page:' + (q + 1), type: 'NEXT' } });
      }
    }
    return els;
  }

  // --- the graph ---------------------------------------------------------------------------
  var style = [
    { selector: 'node', style: {
      'background-color': function (n) { return COLORS[n.data('type')] || '#94a3b8'; },
      width: 'data(size)', height: 'data(size)', label: 'data(label)',
      'font-size': 11, color: '#0f172a', 'text-valign': 'bottom', 'text-margin-y': 3,
      'text-wrap': 'ellipsis', 'text-max-width': 130, 'min-zoomed-font-size': 5,
      'border-width': 1, 'border-color': '#ffffff',
      // Nodes above every edge, also for clicks: stacked bands put edges across nodes.
      'z-index-compare': 'manual', 'z-index': 10
    } },
    { selector: 'node[type = "entity"]', style: { shape: 'round-rectangle' } },
    // (Cytoscape 3.34 misses clicks at the centre of 'diamond', 'star' and 'vee' nodes.)
    { selector: 'node[type = "fact"]', style: { shape: 'round-diamond' } },
    { selector: 'node[type = "goal"]', style: { shape: 'round-triangle' } },
    { selector: 'node[type = "psyche"]', style: { shape: 'hexagon' } },
    { selector: 'node.history', style: {
      'background-opacity': 0.25, 'border-width': 2, 'border-style': 'dashed',
      'border-color': '#10b981', color: '#64748b'
    } },
    { selector: 'node.page', style: {
      shape: 'round-rectangle', width: 150, height: 40, 'text-valign': 'center', 'text-margin-y': 0,
      color: '#f8fafc', 'font-size': 11, 'text-wrap': 'wrap', 'text-max-width': 140, 'min-zoomed-font-size': 0
    } },
    { selector: 'node.tick', style: {
      width: 1, height: 1, 'background-opacity': 0, 'border-width': 0, color: '#475569',
      'font-size': 10, 'text-rotation': 0.6, 'text-halign': 'right', events: 'no',
      'min-zoomed-font-size': 0
    } },
    { selector: 'edge', style: {
      'curve-style': 'haystack', width: 1, 'line-color': '#94a3b8', opacity: 0.35,
      'z-index-compare': 'manual', 'z-index': 1,
      // Edges take no clicks: a haystack edge starts at its node's centre, and would take the
      // click meant for the node.
      events: 'no'
    } },
    { selector: 'edge[type = "NEXT"]', style: { width: 2, 'line-color': '#334155', opacity: 0.9 } },
    { selector: 'edge[type = "SUBJECT"], edge[type = "OBJECT"]', style: {
      'curve-style': 'straight', 'line-color': '#10b981', opacity: 0.8, width: 1.5,
      'target-arrow-shape': 'triangle', 'target-arrow-color': '#10b981', 'arrow-scale': 0.8
    } },
    { selector: 'edge[type = "MENTIONS"]', style: { 'line-color': '#f59e0b' } },
    { selector: '.dim', style: { opacity: 0.12 } },
    { selector: 'node.match', style: { 'border-width': 4, 'border-color': '#2563eb' } },
    { selector: 'node:selected, node.selected', style: {
      'border-width': 5, 'border-color': '#0ea5e9', 'z-index': 12, 'font-weight': 'bold', 'min-zoomed-font-size': 0
    } },
    { selector: 'edge.near', style: { opacity: 1, width: 2.5, 'z-index': 2 } },
    { selector: '.hidden-type, .hidden-history', style: { display: 'none' } }
  ];

  var cy = cytoscape({
    container: document.getElementById('graph'),
    elements: [],
    style: style,
    layout: { name: 'preset' },
    minZoom: 0.02,
    maxZoom: 4,
    textureOnViewport: true,
    hideEdgesOnViewport: nodes.size > 2500,
    motionBlur: false,
    selectionType: 'single',
    boxSelectionEnabled: false
  });

  function applyFilters() {
    cy.batch(function () {
      cy.nodes().forEach(function (n) {
        var t = n.data('type');
        n.toggleClass('hidden-type', state.hiddenTypes.has(t) || (t === 'tick' && state.hiddenTypes.has('episode')) ||
          (t === 'page' && state.hiddenTypes.has('episode')));
        n.toggleClass('hidden-history', !state.showHistory && n.data('invalid') === 1);
      });
    });
  }

  // `fit`: 'end' or 'start' shows that end of the open page (WINDOW episodes and what was
  // said around them), so the first view is readable; zoom out for the whole page.
  function render(fit) {
    cy.batch(function () {
      cy.elements().remove();
      cy.add(elements());
    });
    applyFilters();
    markMatches();
    if (fit) fitWindow(fit);
    updatePager();
  }

  function fitWindow(end) {
    var start = state.page * PAGE;
    var stop = Math.min(chain.length, start + PAGE) - 1;
    var box = cy.nodes(':visible').filter(function (n) { return n.data('type') !== 'page'; });
    if (chain.length) {
      var first = end === 'end' ? Math.max(start, stop - WINDOW + 1) : start;
      var last = end === 'end' ? stop : Math.min(stop, start + WINDOW - 1);
      var x0 = slotX(first) - DX;
      var x1 = slotX(last) + DX;
      var inside = box.filter(function (n) { var x = n.position('x'); return x >= x0 && x <= x1; });
      if (inside.length) box = inside;
    }
    cy.fit(box.length ? box : cy.elements(), 30);
  }

  // --- details -----------------------------------------------------------------------------
  var details = document.getElementById('details');
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function link(id, text) {
    var a = el('a', text);
    a.href = '#';
    a.dataset.id = id;
    a.addEventListener('click', function (ev) { ev.preventDefault(); select(id); });
    return a;
  }
  function nodeLine(id) {
    var n = nodes.get(id);
    var li = el('li');
    if (!n) { li.textContent = id; return li; }
    var dot = el('span', null, 'type-dot');
    dot.style.background = COLORS[n.type];
    li.appendChild(dot);
    li.appendChild(document.createTextNode(' '));
    if (n.type === 'episode') {
      li.appendChild(link(id, day(timeOf(n)) + ' \u00b7 ' + n.episode.source_id));
      li.appendChild(el('div', short((n.episode.speaker ? n.episode.speaker + ': ' : '') + n.text, 140), 'muted'));
    } else {
      li.appendChild(link(id, n.type === 'entity' ? n.entity.name : short(n.text, 90)));
      if (n.invalid_at) li.appendChild(el('span', ' (invalid since ' + day(n.invalid_at) + ')', 'invalid'));
    }
    return li;
  }
  function listSection(title, ids, limit) {
    if (!ids || !ids.length) return;
    var sorted = ids.slice().sort(function (a, b) {
      var ia = chainIndex.has(a) ? chainIndex.get(a) : -1;
      var ib = chainIndex.has(b) ? chainIndex.get(b) : -1;
      return ia - ib;
    });
    details.appendChild(el('h3', title + ' (' + ids.length + ')'));
    var ul = el('ul');
    sorted.slice(0, limit).forEach(function (id) { ul.appendChild(nodeLine(id)); });
    if (sorted.length > limit) ul.appendChild(el('li', '\u2026 and ' + (sorted.length - limit) + ' more', 'muted'));
    details.appendChild(ul);
  }
  function row(dl, name, value) {
    dl.appendChild(el('dt', name));
    var dd = el('dd');
    if (value instanceof Node) dd.appendChild(value); else dd.textContent = value;
    dl.appendChild(dd);
  }

  function showDetails(id) {
    var n = nodes.get(id);
    details.textContent = '';
    if (!n) return;
    var h = el('h2');
    var badge = el('span', n.type, 'badge');
    badge.style.background = COLORS[n.type];
    h.appendChild(badge);
    h.appendChild(el('span', n.type === 'entity' ? n.entity.name : n.id));
    details.appendChild(h);
    details.appendChild(el('div', n.text, 'text'));
    var dl = el('dl');
    row(dl, 'id', n.id);
    row(dl, 'event time', when(n.occurred_at));
    row(dl, 'recorded', when(n.recorded_at));
    if (n.valid_from) row(dl, 'valid from', when(n.valid_from));
    if (n.invalid_at) row(dl, 'invalid since', el('span', when(n.invalid_at) + ' (history: a newer fact replaced it)', 'invalid'));
    row(dl, 'mentions', String(n.mention_count) + (n.last_reinforced_at ? ' \u00b7 last ' + when(n.last_reinforced_at) : ''));
    if (typeof n.strength === 'number') row(dl, 'strength', n.strength.toFixed(2));
    if (n.type === 'episode') {
      var ep = n.episode;
      row(dl, 'source id', ep.source_id);
      row(dl, 'source', ep.source_type + (ep.speaker ? ' \u00b7 ' + ep.speaker : ''));
      row(dl, 'extraction', ep.extraction.state + ' \u00b7 ' + ep.extraction.attempts + ' attempt(s)' +
        (ep.extraction.last_error ? ' \u00b7 ' + ep.extraction.last_error : ''));
      if (ep.summary) row(dl, 'summary', ep.summary);
    } else if (n.type === 'entity') {
      row(dl, 'kind', n.entity.kind);
      if (n.entity.aliases.length) row(dl, 'aliases', n.entity.aliases.join(', '));
      if (n.entity.description) row(dl, 'description', n.entity.description);
    } else if (n.type === 'fact') {
      var f = n.fact;
      row(dl, 'subject', nodes.has(f.subject_id) ? link(f.subject_id, nodes.get(f.subject_id).entity.name) : f.subject_id);
      row(dl, 'predicate', f.predicate);
      if (f.object_id) row(dl, 'object', nodes.has(f.object_id) ? link(f.object_id, nodes.get(f.object_id).entity.name) : f.object_id);
      if (f.object_value) row(dl, 'value', f.object_value);
    } else if (n.type === 'psyche') {
      row(dl, 'kind', n.psyche.kind);
    } else if (n.type === 'goal') {
      row(dl, 'status', n.goal.status + (n.goal.due_at ? ' \u00b7 due ' + when(n.goal.due_at) : ''));
    }
    Object.keys(n.metadata).forEach(function (key) { row(dl, key, n.metadata[key]); });
    details.appendChild(dl);
    if (n.type === 'episode') {
      var prev = chain[chainIndex.get(id) - 1];
      var next = chain[chainIndex.get(id) + 1];
      var nav = el('div', null, 'muted');
      if (prev) { nav.appendChild(link(prev, '\u2190 previous episode')); nav.appendChild(document.createTextNode('  ')); }
      if (next) nav.appendChild(link(next, 'next episode \u2192'));
      details.appendChild(nav);
      listSection('Mentions', mentions.get(id), 50);
      listSection('Derived from it', derivedOf.get(id), 50);
    } else {
      listSection('Provenance: episodes it came from', provenance.get(id), 50);
    }
    if (n.type === 'entity') {
      listSection('Facts', factsOf.get(id), 50);
      listSection('Mentioned in', mentionedIn.get(id), 20);
    }
    if (n.type === 'fact') {
      var history = [];
      nodes.forEach(function (o) {
        if (o.type === 'fact' && o.id !== id && o.fact.subject_id === n.fact.subject_id && o.fact.predicate === n.fact.predicate) {
          history.push(o.id);
        }
      });
      listSection('Other versions (history)', history, 20);
    }
  }

  function highlight(id) {
    cy.batch(function () {
      cy.elements().removeClass('dim near selected');
      var target = cy.getElementById(id);
      if (!target.length) return;
      var near = target.closedNeighborhood();
      cy.elements().not(near).not('.tick').addClass('dim');
      target.connectedEdges().addClass('near');
      target.addClass('selected');
    });
  }

  function select(id) {
    if (!nodes.has(id)) return;
    if (chainIndex.has(id) && pageOf(chainIndex.get(id)) !== state.page) {
      state.page = pageOf(chainIndex.get(id));
      render(null);
    }
    state.selected = id;
    cy.elements().unselect();
    var target = cy.getElementById(id);
    highlight(id);
    if (target.length && target.visible()) {
      var near = target.closedNeighborhood(':visible');
      var box = near.boundingBox();
      if (near.length > 2 && box.w < cy.width() * 4 / 0.3 && box.h < cy.height() * 4 / 0.3) {
        // A node with a few dozen neighbours: show all of them.
        cy.animate({ fit: { eles: near, padding: 60 } }, { duration: 250 });
      } else {
        cy.animate({ center: { eles: target }, zoom: Math.max(cy.zoom(), 0.9) }, { duration: 250 });
      }
    }
    showDetails(id);
    hideResults();
  }

  cy.on('tap', 'node', function (ev) {
    var n = ev.target;
    if (n.data('type') === 'page') { setPage(n.data('page')); return; }
    if (n.data('type') === 'tick') return;
    select(n.id());
  });
  cy.on('tap', function (ev) {
    if (ev.target === cy) { cy.elements().removeClass('dim near selected'); }
  });

  // --- search ------------------------------------------------------------------------------
  var input = document.getElementById('search');
  var results = document.getElementById('results');
  function haystack(n) {
    var parts = [n.id, n.text];
    if (n.type === 'entity') parts.push(n.entity.name, n.entity.aliases.join(' '));
    if (n.type === 'episode') parts.push(n.episode.source_id, n.episode.speaker);
    if (n.type === 'fact') parts.push(n.fact.predicate, n.fact.object_value);
    return parts.join(' \u0001 ').toLowerCase();
  }
  var haystacks = new Map();
  nodes.forEach(function (n, id) { haystacks.set(id, haystack(n)); });
  var TYPE_RANK = { entity: 0, fact: 1, psyche: 2, goal: 3, episode: 4 };

  function search(query) {
    var q = String(query || '').trim().toLowerCase();
    if (!q) { state.matches = []; markMatches(); return []; }
    var found = [];
    haystacks.forEach(function (text, id) { if (text.indexOf(q) !== -1) found.push(id); });
    found.sort(function (a, b) {
      var na = nodes.get(a), nb = nodes.get(b);
      var ea = na.type === 'entity' && na.entity.name.toLowerCase() === q ? -1 : 0;
      var eb = nb.type === 'entity' && nb.entity.name.toLowerCase() === q ? -1 : 0;
      return ea - eb || TYPE_RANK[na.type] - TYPE_RANK[nb.type] ||
        (chainIndex.get(a) || 0) - (chainIndex.get(b) || 0) || (a < b ? -1 : 1);
    });
    state.matches = found;
    markMatches();
    return found;
  }
  function markMatches() {
    cy.batch(function () {
      cy.nodes('.match').removeClass('match');
      state.matches.slice(0, 500).forEach(function (id) { cy.getElementById(id).addClass('match'); });
    });
  }
  function hideResults() { results.hidden = true; }
  function showResults(found) {
    results.textContent = '';
    if (!found.length) {
      results.appendChild(el('li', 'No memory matches', 'none'));
    }
    found.slice(0, 50).forEach(function (id, i) {
      var n = nodes.get(id);
      var li = el('li');
      li.dataset.id = id;
      if (i === 0) li.className = 'active';
      var dot = el('span', null, 'type-dot');
      dot.style.background = COLORS[n.type];
      li.appendChild(dot);
      var body = el('span');
      body.appendChild(el('span', n.type === 'entity' ? n.entity.name : short(n.text, 70)));
      body.appendChild(el('span', '  ' + n.type + (n.type === 'episode' ? ' \u00b7 ' + day(timeOf(n)) : ''), 'muted'));
      li.appendChild(body);
      // mousedown keeps the focus in the box (so the list stays open); the choice is the click,
      // so that no part of it lands on the graph once the list is hidden.
      li.addEventListener('mousedown', function (ev) { ev.preventDefault(); });
      li.addEventListener('click', function (ev) { ev.preventDefault(); select(id); });
      results.appendChild(li);
    });
    if (found.length > 50) results.appendChild(el('li', (found.length - 50) + ' more: refine the search', 'none'));
    results.hidden = false;
  }
  var timer = null;
  input.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      if (!input.value.trim()) { search(''); hideResults(); return; }
      showResults(search(input.value));
    }, 120);
  });
  input.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter') {
      clearTimeout(timer);
      var found = search(input.value);
      if (found.length) select(found[0]);
    } else if (ev.key === 'Escape') {
      hideResults();
    }
  });
  input.addEventListener('blur', function () { setTimeout(hideResults, 150); });

  // --- legend, counts, pager -----------------------------------------------------------------
  var counts = { episode: 0, entity: 0, fact: 0, psyche: 0, goal: 0 };
  var invalidCount = 0;
  nodes.forEach(function (n) { counts[n.type] += 1; if (n.invalid_at) invalidCount += 1; });
  var title = document.getElementById('title');
  title.appendChild(el('span', header.user_id ? 'Persona \u00b7 ' + header.user_id : 'Persona'));
  title.appendChild(el('span', nodes.size + ' memories \u00b7 ' + edges.length + ' edges', 'counts'));
  var legend = document.getElementById('legend');
  ORDER.forEach(function (type) {
    var label = el('label');
    label.dataset.type = type;
    var box = el('input');
    box.type = 'checkbox';
    box.checked = true;
    box.addEventListener('change', function () {
      if (box.checked) state.hiddenTypes.delete(type); else state.hiddenTypes.add(type);
      applyFilters();
    });
    var sw = el('span', null, 'swatch');
    sw.style.background = COLORS[type];
    label.appendChild(box);
    label.appendChild(sw);
    label.appendChild(el('span', TYPE_NAMES[type]));
    label.appendChild(el('span', counts[type].toLocaleString('en'), 'count'));
    legend.appendChild(label);
  });
  var hist = el('label');
  hist.dataset.type = 'history';
  var histBox = el('input');
  histBox.type = 'checkbox';
  histBox.checked = true;
  histBox.addEventListener('change', function () { state.showHistory = histBox.checked; applyFilters(); });
  hist.appendChild(histBox);
  hist.appendChild(el('span', null, 'swatch history'));
  hist.appendChild(el('span', 'Invalidated (history)'));
  hist.appendChild(el('span', invalidCount.toLocaleString('en'), 'count'));
  legend.appendChild(hist);

  var prevBtn = document.getElementById('prev-page');
  var nextBtn = document.getElementById('next-page');
  var pageLabel = document.getElementById('page-label');
  function updatePager() {
    var start = state.page * PAGE;
    var end = Math.min(chain.length, start + PAGE);
    pageLabel.textContent = chain.length
      ? 'episodes ' + (start + 1).toLocaleString('en') + '\u2013' + end.toLocaleString('en') + ' of ' + chain.length.toLocaleString('en') +
        ' \u00b7 ' + day(timeOf(nodes.get(chain[start]))) + ' \u2013 ' + day(timeOf(nodes.get(chain[end - 1])))
      : 'no episodes';
    prevBtn.disabled = state.page === 0;
    nextBtn.disabled = state.page >= pages - 1;
  }
  function setPage(p) {
    p = Math.max(0, Math.min(pages - 1, p));
    if (p === state.page) return;
    var forward = p > state.page;
    state.page = p;
    render(forward ? 'start' : 'end');
  }
  prevBtn.addEventListener('click', function () { setPage(state.page - 1); });
  nextBtn.addEventListener('click', function () { setPage(state.page + 1); });

  render('end');
  document.body.dataset.ready = 'true';

  // For scripts and tests driving the page.
  window.personaViewer = {
    cy: cy, select: select, search: search, setPage: setPage, state: state,
    chain: chain, pageSize: PAGE, pages: pages
  };
})();
