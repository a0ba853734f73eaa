/* <script src="https://HOST/embed.js" data-form="SLUG" async></script> → a self-sizing iframe in its place. */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me) return;
  var origin = new URL(me.src, location.href).origin;
  var scripts = document.querySelectorAll("script[data-form]");
  for (var i = 0; i < scripts.length; i++) {
    var s = scripts[i];
    if (s.getAttribute("data-optin-done") || new URL(s.src, location.href).origin !== origin) continue;
    s.setAttribute("data-optin-done", "1");
    var frame = document.createElement("iframe");
    frame.src = origin + "/f/" + encodeURIComponent(s.getAttribute("data-form"));
    frame.title = s.getAttribute("data-title") || "Sign-up form";
    frame.setAttribute("style", "border:0;width:100%;max-width:480px;height:320px;display:block;overflow:hidden");
    frame.setAttribute("scrolling", "no");
    frame.className = "optin-embed";
    s.parentNode.insertBefore(frame, s.nextSibling);
  }
  if (window.__optinListening && window.__optinListening[origin]) return;
  (window.__optinListening = window.__optinListening || {})[origin] = true;
  window.addEventListener("message", function (event) {
    if (event.origin !== origin || !event.data) return;
    var frames = document.querySelectorAll("iframe.optin-embed");
    for (var j = 0; j < frames.length; j++) {
      if (frames[j].contentWindow !== event.source) continue;
      if (event.data.type === "optin:height" && event.data.height > 0) {
        frames[j].style.height = Math.min(event.data.height, 4000) + "px";
      } else if (event.data.type === "optin:redirect" && /^https?:\/\//.test(event.data.url)) {
        location.href = event.data.url;
      }
    }
  });
})();
