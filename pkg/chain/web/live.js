// opsctl chain serve: keeps a page up to date without a reload. Every few
// seconds it asks for the page again (a conditional request: the receiver
// answers 304 while nothing changed) and, when it changed, puts the new
// content of <main id="live"> in place of the old. The receiver draws
// everything, escaped, on its side; this script only moves its nodes.
// Without JavaScript the page reloads itself (<noscript> refresh).
'use strict';
(function () {
  var live = document.getElementById('live');
  var status = document.getElementById('live-status');
  if (!live || !window.fetch || !window.DOMParser) {
    return;
  }
  var every = Math.max(2, Number(live.getAttribute('data-refresh')) || 5) * 1000;
  var shown = null;
  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }
  function clock() {
    return new Date().toLocaleTimeString();
  }
  function swap(html) {
    var doc = new DOMParser().parseFromString(html, 'text/html');
    var fresh = doc.getElementById('live');
    if (!fresh) {
      return;
    }
    var nodes = Array.prototype.slice.call(fresh.childNodes).map(function (n) {
      return document.importNode(n, true);
    });
    live.replaceChildren.apply(live, nodes);
    document.title = doc.title;
  }
  function tick() {
    fetch(location.href, { cache: 'no-cache', credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) {
        if (!r.ok) {
          throw new Error('HTTP ' + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        // The first answer replaces the content once: it may have changed
        // since the page loaded.
        if (html !== shown) {
          swap(html);
          shown = html;
        }
        say('live, checked ' + clock());
      })
      .catch(function (err) {
        say('not updated (' + err.message + '), trying again');
      })
      .then(function () {
        setTimeout(tick, every);
      });
  }
  say('live');
  setTimeout(tick, every);
})();
