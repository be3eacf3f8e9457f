// Lesson 7, the page's live feed: TODO 4 and TODO 5 (the Python side is l07_capstone.py).
//
// The page (course/capstone_static/app.js, given) calls openFeed("/ws", {onMessage, onStatus}).
// The server (lesson 6's feed behind the capstone's gate) sends JSON text messages:
//   {"hello": {"worker": 1234}}                 first, on every connection: which worker holds it
//   {"id": "1733000000000-0", "text": "..."}    a feed entry; ids grow (as Redis stream ids do)
//   {"error": "..."}                            something went wrong on the server
// and, connected with /ws?after=<id>, it first sends every kept entry after that id, then live ones.
//
// A connection drops: a worker restarts, a laptop sleeps, a train enters a tunnel. The page must
// come back on its own, without hammering the server, and show every entry once: none missed
// while it was away, none twice.

export const BACKOFF_FIRST_MS = 250;  // the first wait before connecting again ...
export const BACKOFF_MAX_MS = 5000;   // ... doubling after each failure, never longer than this

// Given: whether stream id `id` comes after `than` (null: nothing seen yet). "9-0" < "10-0".
export function isNewer(id, than) {
  if (than === null || than === undefined) return true;
  const [a, b] = id.split("-").map(Number);
  const [c, d] = than.split("-").map(Number);
  return a > c || (a === c && b > d);
}

// TODO 4: how long to wait (ms) before connecting again after `failures` failed attempts in a row
// (0 for the first wait). Double from BACKOFF_FIRST_MS each time, cap it at BACKOFF_MAX_MS, and
// jitter it: a random part of it (for instance anywhere between half and all of it), so that
// a thousand pages that lost the same worker do not all come back at the same millisecond.
// Symptom: reconnects hammer the server at a fixed pace, or every page waits exactly as long.
export function reconnectDelay(failures) {
  // ### SOLUTION
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** failures);
  return ceiling / 2 + Math.random() * (ceiling / 2);
  // ### STUB
  // return BACKOFF_FIRST_MS;  // TODO 4: the same wait every time
  // ### END
}

// The page's feed: connects to `path` (a path on this page's own server) and keeps connected.
// onMessage(message) gets each message (parsed) once; onStatus(state, text) says how the
// connection is ("live" or "down", and why, for people). Returns an object whose `lastId` is the
// id of the last feed entry seen, and whose close() stops it for good.
export function openFeed(path, { onMessage, onStatus }) {
  const feed = { lastId: null, socket: null, failures: 0, connections: 0, stopped: false };

  function connect() {
    // TODO 5: open a WebSocket to `path` on this page's host (ws: for an http: page, wss: for
    // https:), with `?after=<feed.lastId>` once an entry has been seen. On open: the failures
    // count goes back to 0, count the connection, onStatus("live", ...). On each message: parse
    // it; a message with an `id` is passed on only if it is newer than feed.lastId (a resumed
    // connection can repeat what the old one delivered), and then becomes feed.lastId; messages
    // without an id (hello, error) are passed on as they are. On close (unless feed.stopped):
    // onStatus("down", ...) with the close code and whether it had opened at all (a refused
    // handshake never opens: the page sees code 1006), then connect again after
    // reconnectDelay(failures), counting the failure.
    // ### SOLUTION
    const url = new URL(path, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (feed.lastId !== null) url.searchParams.set("after", feed.lastId);
    const socket = (feed.socket = new WebSocket(url));
    let opened = false;
    socket.onopen = () => {
      opened = true;
      feed.failures = 0;
      feed.connections += 1;
      onStatus("live", "live");
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.id !== undefined) {
        if (!isNewer(message.id, feed.lastId)) return;
        feed.lastId = message.id;
      }
      onMessage(message);
    };
    socket.onclose = (event) => {
      if (feed.stopped) return;
      const delay = reconnectDelay(feed.failures);
      feed.failures += 1;
      const what = opened ? "connection lost" : "refused or unreachable";
      onStatus("down", `${what} (close code ${event.code}); trying again in ${Math.round(delay)} ms`);
      setTimeout(connect, delay);
    };
    // ### STUB
    // const url = new URL(path, location.href);
    // url.protocol = "ws:";
    // const socket = (feed.socket = new WebSocket(url));
    // socket.onopen = () => onStatus("live", "live");
    // socket.onmessage = (event) => onMessage(JSON.parse(event.data));
    // socket.onclose = (event) => onStatus("down", `closed (close code ${event.code}); TODO 5: reconnect`);
    // ### END
  }

  connect();
  feed.close = () => {
    feed.stopped = true;
    if (feed.socket) feed.socket.close();
  };
  return feed;
}
