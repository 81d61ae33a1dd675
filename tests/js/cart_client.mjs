// Drives the official `phoenix` client from stdin, one JSON command per line, and prints every
// reply and push as a JSON line. Usage: node cart_client.mjs WS_URL; closing stdin disconnects.
//   {"op": "join", "topic": T, "params": {...}}            -> join_ok / join_error {topic, response}
//   {"op": "push", "topic": T, "event": E, "payload": {...}, "id": N} -> reply {id, status, response}
//   pushes of `cart` on a joined topic                      -> cart {topic, payload}
import { Socket } from "phoenix";
import WebSocket from "ws";
import readline from "node:readline";

const [url] = process.argv.slice(2);
const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");

// HEARTBEAT_MS: the heartbeat period (tests/support/store_fixtures.py says why 2 s).
const socket = new Socket(url, { transport: WebSocket, heartbeatIntervalMs: Number(process.env.HEARTBEAT_MS || 2000), reconnectAfterMs: () => 200 });
socket.onOpen(() => out({ type: "open" }));
socket.onClose((event) => out({ type: "close", code: event.code }));
socket.onMessage((message) => {
  if (message.topic === "phoenix" && message.event === "phx_reply") out({ type: "heartbeat_reply", status: message.payload.status });
});
socket.connect();

const channels = {};
const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.op === "join") {
    const channel = socket.channel(command.topic, command.params || {});
    channels[command.topic] = channel;
    channel.on("cart", (payload) => out({ type: "cart", topic: command.topic, payload }));
    channel.join()
      .receive("ok", (response) => out({ type: "join_ok", topic: command.topic, response }))
      .receive("error", (response) => {
        out({ type: "join_error", topic: command.topic, response });
        channel.leave(); // no retries for a refused join
      })
      .receive("timeout", () => out({ type: "join_timeout", topic: command.topic }));
  } else if (command.op === "push") {
    channels[command.topic].push(command.event, command.payload)
      .receive("ok", (response) => out({ type: "reply", id: command.id, status: "ok", response }))
      .receive("error", (response) => out({ type: "reply", id: command.id, status: "error", response }))
      .receive("timeout", () => out({ type: "reply", id: command.id, status: "timeout" }));
  }
});
lines.on("close", () => socket.disconnect(() => process.exit(0)));
