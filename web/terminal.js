// The dashboard's live terminal: an agent's terminal in xterm.js over the
// attach WebSocket. Read-only until the user clicks "type" (the server
// drops keys until told too); closing the panel or the page detaches and
// the agent runs on. Agent bytes go only to xterm.js, a terminal emulator.
"use strict";
(() => {
  let current = null;

  const $ = id => document.getElementById(id);

  function status(text) { $("term-status").textContent = text; }

  function close() {
    const c = current;
    current = null;
    if (!c) return;
    c.observer.disconnect();
    c.ws.close(1000);
    c.term.dispose();
    $("terminal").replaceChildren();
    $("terminal-section").hidden = true;
  }

  function setTyping(c, on) {
    c.typing = on;
    c.term.options.disableStdin = !on;
    if (c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify({ input: on }));
    const b = $("term-type");
    b.textContent = on ? "stop typing" : "type";
    b.dataset.typing = on ? "on" : "off";
    status(on ? "typing: your keys go to the agent" : "read-only: click “type” to answer");
    if (on) c.term.focus();
  }

  function open(id) {
    close();
    $("terminal-section").hidden = false;
    $("termtitle").textContent = "Terminal — " + id;
    const box = $("terminal");
    const term = new Terminal({ disableStdin: true, scrollback: 5000, fontSize: 13,
                                theme: { background: "#0d1117" } });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/instances/${encodeURIComponent(id)}/attach`);
    ws.binaryType = "arraybuffer";
    const c = { id, ws, term, typing: false, observer: new ResizeObserver(() => { try { fit.fit(); } catch (_) {} }) };
    current = c;
    const sendSize = () => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ cols: term.cols, rows: term.rows }));
    };
    term.onResize(sendSize);
    ws.onopen = () => { box.dataset.state = "attached"; try { fit.fit(); } catch (_) {} sendSize(); setTyping(c, false); };
    ws.onmessage = ev => { if (typeof ev.data !== "string") term.write(new Uint8Array(ev.data)); };
    ws.onclose = ev => {
      if (current !== c) return;
      box.dataset.state = "closed";
      status("detached" + (ev.reason ? ": " + ev.reason : ""));
    };
    const keys = new TextEncoder();
    term.onData(d => { if (c.typing && ws.readyState === WebSocket.OPEN) ws.send(keys.encode(d)); });
    c.observer.observe(box);
    $("term-type").onclick = () => setTyping(c, !c.typing);
    $("term-close").onclick = close;
    status("attaching…");
  }

  window.openTerminal = open;
})();
