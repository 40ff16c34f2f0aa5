// socket.io-client 4.8 on Node: the same figures as the Rust clients, against the same server.
//
// Usage: node client.mjs URL '{"emit":[[n,size],...],"receive":[[n,size],...],"acks":n,"warmup":n,
//                              "transports":["websocket"]}'
// Prints exactly one JSON line on stdout:
//   {"emit":[msgs_per_s,...],"receive":[msgs_per_s,...],"lost":[events,...],"ack_us":[rtt,...]}
// socket.io-client is resolved from interop/node/node_modules (pinned there, installed with
// `npm ci --prefix interop/node`), so the bench folder needs no package.json of its own.
// Every wait is bounded: the script exits with an error after 120 s whatever happens.

import { createRequire } from "node:module";

const require = createRequire(new URL("../../../interop/node/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [url, configText] = process.argv.slice(2);
const config = JSON.parse(configText);
const TOKEN = "secret";

const guard = setTimeout(() => {
  process.stderr.write("client.mjs: timed out\n");
  process.exit(3);
}, 120_000);

function connect() {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      transports: config.transports ?? ["websocket"],
      auth: { token: TOKEN },
      reconnection: false,
      forceNew: true,
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

const now = () => process.hrtime.bigint();
const seconds = (from, to) => Number(to - from) / 1e9;

async function stats(socket) {
  const reply = await socket.timeout(30_000).emitWithAck("stats");
  return reply.received;
}

async function emitFigure(socket, n, size) {
  const payload = "x".repeat(size);
  const before = await stats(socket);
  const start = now();
  for (let i = 0; i < n; i++) {
    socket.emit("count", i, payload);
  }
  let counted = (await stats(socket)) - before;
  while (counted < n) {
    counted = (await stats(socket)) - before;
  }
  return n / seconds(start, now());
}

// Resolves at the server's "flood-done" (sent after the flood) with the rate and how
// many of the n never reached the handler.
function receiveFigure(socket, n, size) {
  return new Promise((resolve) => {
    let got = 0;
    const start = now();
    const onFlood = () => {
      got += 1;
    };
    const onDone = () => {
      socket.off("flood", onFlood);
      socket.off("flood-done", onDone);
      resolve({ rate: got / seconds(start, now()), lost: n - got });
    };
    socket.on("flood", onFlood);
    socket.on("flood-done", onDone);
    socket.emit("flood", n, size);
  });
}

async function ackFigure(socket, warmup, n) {
  const samples = [];
  for (let i = 0; i < warmup + n; i++) {
    const start = now();
    await socket.timeout(30_000).emitWithAck("echo", i);
    if (i >= warmup) samples.push(Number(now() - start) / 1e3);
  }
  return samples;
}

const socket = await connect();
const result = { emit: [], receive: [], lost: [], ack_us: [] };
for (const [n, size] of config.emit) result.emit.push(await emitFigure(socket, n, size));
for (const [n, size] of config.receive) {
  const { rate, lost } = await receiveFigure(socket, n, size);
  result.receive.push(rate);
  result.lost.push(lost);
}
result.ack_us = await ackFigure(socket, config.warmup, config.acks);
socket.disconnect();
clearTimeout(guard);
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(0);
