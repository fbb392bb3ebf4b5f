// The inbox: requests that sites sent from their own servers (OpenID CIBA), with no QR
// code to scan. While the home screen is open, a WebSocket to /api/mobile/v1/inbox/ws
// sends the whole list at once and again after every change; a dropped socket is opened
// again (1 s, 2 s, ... up to 30 s), and gets the whole list first, so nothing is missed.
// The socket's proof goes as a subprotocol beside "idp-inbox" (a browser cannot set a
// header on a WebSocket); each connection signs a fresh one.

/** Watch the inbox; `render(items)` gets each list. Returns a function that stops. */
export function watchInbox(api, render) {
  let socket = null;
  let stopped = false;
  let timer = null;
  let backoff = 1000;

  const again = () => {
    if (stopped) { return; }
    timer = window.setTimeout(connect, backoff);
    backoff = Math.min(30000, backoff * 2);
  };

  async function connect() {
    if (stopped) { return; }
    let ws;
    try {
      ws = await api.inboxSocket();
    } catch (error) {
      again();
      return;
    }
    if (stopped) { ws.close(); return; }
    socket = ws;
    ws.onmessage = (event) => {
      let message = null;
      try { message = JSON.parse(event.data); } catch (error) { return; }
      if (message && Array.isArray(message.inbox)) {
        backoff = 1000;
        render(message.inbox);
      }
    };
    ws.onclose = () => {
      if (socket === ws) { socket = null; }
      again();
    };
  }

  connect();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
    if (socket) { socket.close(); }
    socket = null;
  };
}
