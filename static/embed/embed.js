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
    frame.src = origin + "/f/" + encodeURIComponent(s.getAttribute("data-form")) + "#ref=" + encodeURIComponent(location.href);
    var title = s.getAttribute("data-title");
    frame.title = title || "Sign-up form";
    // Without data-title the frame takes its form's own title (sent with the height): distinct names for
    // several forms on one page, for people who move between frames with a screen reader.
    if (!title) frame.setAttribute("data-optin-auto-title", "");
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
        if (frames[j].hasAttribute("data-optin-auto-title") && typeof event.data.title === "string" && event.data.title) {
          frames[j].title = event.data.title.slice(0, 200);
        }
      } else if (event.data.type === "optin:redirect" && /^https?:\/\//.test(event.data.url)) {
        location.href = event.data.url;
      }
    }
  });
})();
