// Joins topics with the official `phoenix` client and prints every reply and push as a JSON line.
// Usage: node phoenix_client.mjs WS_URL TOPIC... ; closing stdin disconnects and exits.
import { Socket } from "phoenix";
import WebSocket from "ws";

const [url, ...topics] = process.argv.slice(2);
const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");

// HEARTBEAT_MS: the heartbeat period (tests/support/store_fixtures.py says why 2 s).
const socket = new Socket(url, { transport: WebSocket, heartbeatIntervalMs: Number(process.env.HEARTBEAT_MS || 2000), reconnectAfterMs: () => 200 });
socket.onOpen(() => out({ type: "open" }));
socket.onClose((event) => out({ type: "close", code: event.code }));
socket.onMessage((message) => {
  if (message.topic === "phoenix" && message.event === "phx_reply") {
    out({ type: "heartbeat_reply", status: message.payload.status });
  }
});

for (const topic of topics) {
  const channel = socket.channel(topic, {});
  channel.on("released", (payload) => out({ type: "released", topic, payload }));
  channel.on("stock_change", (payload) => out({ type: "stock_change", topic, payload }));
  channel
    .join()
    .receive("ok", (response) => out({ type: "join_ok", topic, response }))
    .receive("error", (response) => {
      out({ type: "join_error", topic, response });
      channel.leave(); // no retries for a topic that does not exist
    })
    .receive("timeout", () => out({ type: "join_timeout", topic }));
}

socket.connect();
process.stdin.on("end", () => socket.disconnect(() => process.exit(0)));
process.stdin.resume();
