/* In-place submit (JSON mode) and height messages to the embedding page. The form works without this file. */
(function () {
  "use strict";
  var form = document.querySelector("[data-optin-form]");
  var status = document.querySelector("[data-optin-status]");
  var summary = document.querySelector("[data-optin-summary]");

  function reportHeight() {
    if (window.parent !== window) {
      window.parent.postMessage({ type: "optin:height", height: Math.ceil(document.documentElement.getBoundingClientRect().height), title: document.title }, "*");
    }
  }
  if (window.ResizeObserver) new ResizeObserver(reportHeight).observe(document.documentElement);
  window.addEventListener("load", reportHeight);
  reportHeight();
  var ref = form && form.querySelector("input[name=referrer]");
  if (ref) {
    // The page the form is on: the host page (embed.js passes it after #ref=), else this page.
    var m = /[#&]ref=([^&]*)/.exec(location.hash);
    try { ref.value = m ? decodeURIComponent(m[1]) : window.parent === window ? location.href : document.referrer; } catch (e) {}
  }
  if (!form || !window.fetch) return;
  var needsJs = form.querySelector("[data-optin-needs-js]");
  // Shown to visitors whose browser cannot solve the challenge (no JavaScript, or no Web Crypto off https).
  if (needsJs && window.crypto && crypto.subtle) needsJs.hidden = true;

  function setError(input, messages) {
    var error = document.getElementById(input.id + "-error");
    if (messages && messages.length) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", error.id);
      error.textContent = messages.join(" ");
      error.hidden = false;
    } else {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
      error.textContent = "";
      error.hidden = true;
    }
  }

  function showFormErrors(messages) {
    summary.textContent = "";
    (messages || []).forEach(function (m) { var p = document.createElement("p"); p.textContent = m; summary.appendChild(p); });
    summary.hidden = !messages || !messages.length;
  }

  function succeed(data) {
    var p = document.createElement("p");
    p.className = "optin-success";
    p.textContent = data.message;
    status.appendChild(p);
    form.remove();
    if (data.redirect && /^https?:\/\//.test(data.redirect)) {
      if (window.parent !== window) window.parent.postMessage({ type: "optin:redirect", url: data.redirect }, "*");
      try { window.top.location.href = data.redirect; } catch (e) {
        var a = document.createElement("a"); a.href = data.redirect; a.target = "_top"; a.textContent = "Continue";
        var wrap = document.createElement("p"); wrap.appendChild(a); status.appendChild(wrap);
      }
    }
  }

  function fail(data) {
    var errors = data.errors || {}, first = null;
    Array.prototype.forEach.call(form.querySelectorAll(".optin-field input"), function (input) {
      setError(input, errors[input.name]);
      if (errors[input.name] && !first) first = input;
    });
    showFormErrors(errors._form);
    if (data.token) form.elements.token.value = data.token;
    if (errors._form) summary.focus(); else if (first) first.focus();
  }

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // Self-hosted proof of work (ALTCHA): find n with sha256(salt + n) == challenge. No third party, no cookie.
  function solveChallenge() {
    var input = form.querySelector("[data-optin-altcha]");
    if (!input) return Promise.resolve();
    return fetch(input.getAttribute("data-optin-altcha"), { credentials: "omit" }).then(function (r) { return r.json(); }).then(function (c) {
      var encoder = new TextEncoder();
      function attempt(n) {
        if (n > c.maxNumber) throw new Error("unsolved");
        return crypto.subtle.digest("SHA-256", encoder.encode(c.salt + n)).then(function (digest) {
          if (hex(digest) !== c.challenge) return attempt(n + 1);
          input.value = btoa(JSON.stringify({ algorithm: c.algorithm, challenge: c.challenge, number: n, salt: c.salt, signature: c.signature }));
        });
      }
      return attempt(0);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    solveChallenge().then(function () { return fetch(form.action, {
      method: "POST",
      headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(new FormData(form)).toString(),
      credentials: "omit"
    }); }).then(function (response) {
      return response.json().catch(function () { return { errors: { _form: ["Something went wrong. Please try again."] } }; });
    }).then(function (data) {
      if (data.ok) succeed(data); else fail(data);
    }, function () {
      fail({ errors: { _form: ["We could not reach the server. Check your connection and try again."] } });
    }).then(function () {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    });
  });
})();
