// Official socket.io v4 server used by relink's interop tests.
//
// Usage:
//   node server.mjs [--port 0] [--recovery] [--token SECRET] [--ping-interval MS]
//                   [--ping-timeout MS] [--max-payload N] [--verbose] [--standalone]
//                   [--transports polling,websocket]
//
// --standalone: for a person trying relink by hand; stdin is not read (no commands), and
// the server runs until SIGINT/SIGTERM (Ctrl-C, or `kill %1` when started with `&`).
//
// Protocol with the parent process:
//   - once listening, exactly one line is printed on stdout: {"port":12345}
//   - then every stdin line is a JSON command, answered by exactly one JSON line on stdout
//     ({"cmd":"stats"}, {"cmd":"disconnect-all"}, {"cmd":"disconnects"}, {"cmd":"close"})
//   - the process exits when stdin closes (so a dead parent never leaves it running),
//     on SIGTERM/SIGINT, or after {"cmd":"close"}
//   - nothing else is ever printed on stdout; logs go to stderr with --verbose only.

import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Server } from "socket.io";

// ---------------------------------------------------------------------------
// arguments

function parseArgs(argv) {
  const opts = {
    port: 0,
    recovery: false,
    token: "secret",
    pingInterval: undefined,
    pingTimeout: undefined,
    maxPayload: undefined,
    verbose: false,
    standalone: false,
    transports: ["polling", "websocket"],
    burstOnConnect: 0,
  };
  const intArg = (name, value) => {
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < 0) {
      fail(`${name} expects a non-negative integer, got ${JSON.stringify(value)}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    switch (arg) {
      case "--port":
        opts.port = intArg(arg, argv[++i]);
        break;
      case "--recovery":
        opts.recovery = true;
        break;
      case "--token":
        if (argv[i + 1] === undefined) fail("--token expects a value");
        opts.token = argv[++i];
        break;
      case "--ping-interval":
        opts.pingInterval = intArg(arg, argv[++i]);
        break;
      case "--ping-timeout":
        opts.pingTimeout = intArg(arg, argv[++i]);
        break;
      case "--max-payload":
        opts.maxPayload = intArg(arg, argv[++i]);
        break;
      case "--burst-on-connect":
        opts.burstOnConnect = intArg(arg, argv[++i]);
        break;
      case "--verbose":
        opts.verbose = true;
        break;
      case "--standalone":
        opts.standalone = true;
        break;
      case "--transports": {
        const list = (argv[++i] ?? "").split(",").filter((t) => t !== "");
        if (list.length === 0 || list.some((t) => t !== "polling" && t !== "websocket")) {
          fail("--transports expects a comma-separated list of polling and websocket");
        }
        opts.transports = list;
        break;
      }
      default:
        fail(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  return opts;
}

function fail(message) {
  process.stderr.write(`server.mjs: ${message}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

function log(...args) {
  if (opts.verbose) {
    process.stderr.write(`[server.mjs] ${args.map((a) => (typeof a === "string" ? a : safeJson(a))).join(" ")}\n`);
  }
}

function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

// stdout carries the machine-readable protocol only.
function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// ---------------------------------------------------------------------------
// socket.io server

const serverOptions = {
  transports: opts.transports,
};
if (opts.recovery) {
  serverOptions.connectionStateRecovery = {
    maxDisconnectionDuration: 120000,
    skipMiddlewares: true,
  };
}
if (opts.pingInterval !== undefined) serverOptions.pingInterval = opts.pingInterval;
if (opts.pingTimeout !== undefined) serverOptions.pingTimeout = opts.pingTimeout;
if (opts.maxPayload !== undefined) serverOptions.maxHttpBufferSize = opts.maxPayload;

const httpServer = createServer();
const io = new Server(httpServer, serverOptions);

// Why each socket left, in order (the "disconnects" command).
const disconnects = [];

// "count" bookkeeping, shared by all namespaces: id -> times seen.
const seen = new Map();
let received = 0;

function countStats() {
  return { received, unique: seen.size, duplicates: received - seen.size };
}

function authMiddleware(socket, next) {
  const token = socket.handshake.auth ? socket.handshake.auth.token : undefined;
  if (token === undefined || token === null || token === "") {
    const err = new Error("unauthorized");
    err.data = { reason: "empty token" };
    log("auth rejected (empty token) on", socket.nsp.name);
    return next(err);
  }
  if (token !== opts.token) {
    const err = new Error("unauthorized");
    err.data = { reason: "invalid token" };
    log("auth rejected (invalid token) on", socket.nsp.name);
    return next(err);
  }
  next();
}

// Splits a trailing acknowledgement callback off the event arguments.
function splitAck(args) {
  if (args.length > 0 && typeof args[args.length - 1] === "function") {
    return { args: args.slice(0, -1), ack: args[args.length - 1] };
  }
  return { args, ack: undefined };
}

// Registers a handler that never crashes the process on bad input.
function on(socket, event, handler) {
  socket.on(event, (...raw) => {
    try {
      handler(...raw);
    } catch (err) {
      log(`handler "${event}" failed:`, String(err && err.stack ? err.stack : err));
      const { ack } = splitAck(raw);
      if (ack) {
        try {
          ack({ error: String(err && err.message ? err.message : err) });
        } catch {
          // ignore
        }
      }
    }
  });
}

function setupNamespace(nsp) {
  nsp.use(authMiddleware);
  nsp.on("connection", (socket) => {
    log("connection", nsp.name, socket.id, "recovered:", socket.recovered, "transport:", socket.conn.transport.name);
    socket.on("disconnect", (reason) => {
      disconnects.push(reason);
      log("disconnect", nsp.name, socket.id, reason);
    });

    on(socket, "echo", (...raw) => {
      const { args, ack } = splitAck(raw);
      if (ack) {
        ack(...args);
      } else {
        socket.emit("echo", ...args);
      }
    });

    // The chat example: said to everyone in the namespace, the sender included.
    on(socket, "chat", (...raw) => {
      const { args, ack } = splitAck(raw);
      nsp.emit("chat", ...args);
      if (ack) ack();
    });

    on(socket, "ask", (...raw) => {
      const { args, ack } = splitAck(raw);
      const [name, ...rest] = args;
      socket.timeout(5000).emit(name, ...rest, (err, ...replyArgs) => {
        const result = { ok: !err, reply: replyArgs };
        socket.emit("asked", result);
        if (ack) ack(result);
      });
    });

    on(socket, "disconnect-me", (...raw) => {
      const { ack } = splitAck(raw);
      if (ack) ack();
      socket.disconnect();
    });

    on(socket, "tick", (...raw) => {
      const { args, ack } = splitAck(raw);
      const count = Math.max(0, Math.floor(Number(args[0]) || 0));
      const rawInterval = Number(args[1]);
      const intervalMs = Number.isFinite(rawInterval) ? Math.max(1, Math.floor(rawInterval)) : 100;
      // Emit to the socket's own room (not via `socket`) and never clear the timer on
      // disconnect: while the client is away, the packets are still stored by the
      // session-aware adapter and replayed upon connection state recovery.
      const target = io.of(nsp.name);
      const room = socket.id;
      let n = 0;
      if (ack) ack(count);
      if (count === 0) {
        target.to(room).emit("tick-done", count);
        return;
      }
      const timer = setInterval(() => {
        n += 1;
        target.to(room).emit("tick", n);
        if (n >= count) {
          clearInterval(timer);
          target.to(room).emit("tick-done", count);
        }
      }, intervalMs);
    });

    on(socket, "count", (...raw) => {
      const { args, ack } = splitAck(raw);
      const id = args[0];
      received += 1;
      seen.set(id, (seen.get(id) || 0) + 1);
      if (ack) ack(id);
    });

    on(socket, "stats", (...raw) => {
      const { ack } = splitAck(raw);
      const stats = countStats();
      if (ack) {
        ack(stats);
      } else {
        socket.emit("stats", stats);
      }
    });

    // Numbered events, for checking that every one arrives once and in order.
    on(socket, "burst", (...raw) => {
      const { args, ack } = splitAck(raw);
      const n = Math.max(0, Math.floor(Number(args[0]) || 0));
      const size = Math.max(0, Math.floor(Number(args[1]) || 0));
      // Through the socket's room: stored for connection state recovery when it is on.
      burst(io.of(nsp.name).to(socket.id), n, size);
      if (ack) ack(n);
    });

    on(socket, "flood", (...raw) => {
      const { args, ack } = splitAck(raw);
      const n = Math.max(0, Math.floor(Number(args[0]) || 0));
      const size = Math.max(0, Math.floor(Number(args[1]) || 0));
      const payload = "x".repeat(size);
      for (let i = 0; i < n; i++) {
        socket.emit("flood", payload);
      }
      socket.emit("flood-done", n);
      if (ack) ack(n);
    });

    socket.emit("welcome", { id: socket.id, nsp: socket.nsp.name, recovered: socket.recovered });
    // A history replay or a busy room: numbered events right after connect.
    if (opts.burstOnConnect > 0 && !socket.recovered) {
      burst(io.of(nsp.name).to(socket.id), opts.burstOnConnect, 0);
    }
  });
}

// `n` events `("burst", i[, payload])` for i = 1..n, then `("burst-done", n)`, to `target`
// (a socket, or a room while its socket is away: stored for connection state recovery).
function burst(target, n, size) {
  const payload = "x".repeat(size);
  for (let i = 1; i <= n; i++) {
    if (size > 0) target.emit("burst", i, payload);
    else target.emit("burst", i);
  }
  target.emit("burst-done", n);
}

setupNamespace(io.of("/"));
setupNamespace(io.of("/admin"));

io.engine.on("connection_error", (err) => {
  log("engine connection_error:", err.code, err.message);
});

// ---------------------------------------------------------------------------
// lifecycle

let exiting = false;
function shutdown(code) {
  if (exiting) return;
  exiting = true;
  log("shutting down");
  // Do not wait for lingering keep-alive connections.
  const force = setTimeout(() => process.exit(code), 1000);
  force.unref();
  io.close(() => process.exit(code));
}

process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));

httpServer.on("error", (err) => {
  process.stderr.write(`server.mjs: ${err.code || ""} ${err.message}\n`);
  process.exit(1);
});

httpServer.listen(opts.port, "127.0.0.1", () => {
  const { port } = httpServer.address();
  reply({ port });
  log("listening on", port, "options:", serverOptions);
  listening = true;
  for (const line of pendingLines.splice(0)) onLine(line);
});

function handleCommand(cmd) {
  switch (cmd && cmd.cmd) {
    case "stats":
      return { ok: true, ...countStats(), clients: io.engine.clientsCount };
    case "disconnect-all": {
      // Close every Engine.IO connection (a transport drop from the client's point of
      // view: reason "transport close"), not a namespace-level disconnect, so that the
      // sessions stay recoverable ("forced close" on the server side).
      // `discard = true` closes right away: without it a polling session with no pending
      // GET would linger for up to 30 s, and buffered packets would be flushed first.
      // With `burst: N`, N numbered events then go to each closed socket's room in "/":
      // missed while away, replayed by connection state recovery.
      const rooms = [...io.of("/").sockets.keys()];
      const clients = Object.values(io.engine.clients);
      for (const client of clients) client.close(true);
      const n = Math.max(0, Math.floor(Number(cmd.burst) || 0));
      if (n > 0) {
        for (const room of rooms) burst(io.of("/").to(room), n, Math.max(0, Math.floor(Number(cmd.size) || 0)));
      }
      return { ok: true, closed: clients.length };
    }
    case "disconnects":
      return { ok: true, reasons: disconnects };
    case "close":
      return null;
    default:
      return { ok: false, error: `unknown command ${safeJson(cmd && cmd.cmd)}` };
  }
}

// stdin is watched from the start (so that a parent dying early still ends us), but
// commands are only answered once the port line has been printed.
let listening = false;
const pendingLines = [];

function onLine(line) {
  if (line.trim() === "") return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    reply({ ok: false, error: `invalid JSON: ${err.message}` });
    return;
  }
  log("command", cmd);
  if (cmd && cmd.cmd === "close") {
    reply({ ok: true });
    shutdown(0);
    return;
  }
  try {
    reply(handleCommand(cmd));
  } catch (err) {
    reply({ ok: false, error: String(err && err.message ? err.message : err) });
  }
}

if (!opts.standalone) {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on("line", (line) => {
    if (listening) onLine(line);
    else pendingLines.push(line);
  });
  // Parent went away (or closed our stdin on purpose): never outlive it.
  rl.on("close", () => shutdown(0));
}
