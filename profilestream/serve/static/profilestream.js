/* profilestream.js: the tracking snippet of `profilestream serve` (docs/http.md "The snippet").
 *
 * Embed (the collector is the origin this file is loaded from):
 *   <script>window.ps=window.ps||function(){(ps.q=ps.q||[]).push(arguments)};</script>
 *   <script async src="https://collect.example.com/v1/ps.js"></script>
 *
 * Then: ps('add_to_cart', {product_id: 'sku-1', price: 19.9}); ps('login', {customer_key: '...'}).
 * A page view is sent on load, with the page's URL (its utm_* and newsletter key parameters are
 * read by the collector) and referrer. Events are batched and sent with navigator.sendBeacon
 * (fetch with keepalive where there is none), at most every 1 s and when the page is hidden.
 * Consent: nothing is sent while window.psConsent === false or ps('consent', false) was called;
 * events queued meanwhile are dropped, not sent later. ps('consent', true) switches it back on.
 * The device id is the collector's first-party cookie: the first request goes out alone and
 * the rest wait for its answer, so the cookie it sets is there for every later one.
 * No dependencies, no build step.
 */
(function (w, d) {
  "use strict";
  if (w.ps && w.ps.loaded) return;
  var script = d.currentScript || d.querySelector('script[src*="/v1/ps.js"]');
  var base = script ? new URL(script.src, d.baseURI).origin : "";
  var endpoint = base + "/v1/collect";
  var TYPES = ["page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout", "purchase", "login", "logout"];
  var queue = [], timer = null, first = true, waiting = false;
  var consent = w.psConsent !== false;

  function body(events) {
    return JSON.stringify(events.length === 1 ? events[0] : { events: events });
  }

  function viaFetch(events, then) {
    var done = then || function () {};
    w.fetch(endpoint, {
      method: "POST", body: body(events), keepalive: true, credentials: "include",
      headers: { "Content-Type": "text/plain" }
    }).then(done, done);
  }

  function flush() {
    if (timer) { w.clearTimeout(timer); timer = null; }
    if (!consent) { queue = []; return; }
    if (waiting || !queue.length) return;
    if (first) {  // alone, and answered before the rest: it brings the device cookie
      first = false;
      waiting = true;
      viaFetch(queue.splice(0, 500), function () { waiting = false; flush(); });
      return;
    }
    while (queue.length) {
      var batch = queue.splice(0, 500);
      var sent = navigator.sendBeacon && navigator.sendBeacon(endpoint, new Blob([body(batch)], { type: "text/plain" }));
      if (!sent) viaFetch(batch);
    }
  }

  function send(type, fields) {
    if (!consent || TYPES.indexOf(type) < 0) return;
    var event = { type: type, url: w.location.href };
    if (d.referrer) event.referrer = d.referrer;
    for (var k in fields || {}) if (Object.prototype.hasOwnProperty.call(fields, k)) event[k] = fields[k];
    queue.push(event);
    if (!timer) timer = w.setTimeout(flush, first ? 0 : 1000);
  }

  function ps(command, fields) {
    if (command === "consent") {
      consent = fields !== false;
      if (!consent) queue = [];
      return;
    }
    if (command === "flush") { flush(); return; }
    send(command, fields);
  }

  var earlier = (w.ps && w.ps.q) || [];
  w.ps = ps;
  ps.loaded = true;
  for (var i = 0; i < earlier.length; i++) ps.apply(null, earlier[i]);
  send("page_view", {});
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") { waiting = false; flush(); } });
  w.addEventListener("pagehide", function () { waiting = false; flush(); });
})(window, document);
