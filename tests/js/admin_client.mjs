// The admin dashboard's socket through the official `phoenix` client, with its Presence class.
// Usage: node admin_client.mjs WS_URL TOKEN. Prints JSON lines:
//   {type: "open"} / {type: "error"} / {type: "close", code}
//   {type: "join_ok", response} / {type: "join_error", response}
//   {type: "presence", shoppers, tabs: [{shopper, node, page, items}], at}   on every sync
//   {type: "drop", payload}                                                  every push of `drop`
// Closing stdin disconnects.
import { Presence, Socket } from "phoenix";
import WebSocket from "ws";
import readline from "node:readline";

const [url, token] = process.argv.slice(2);
const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");

const socket = new Socket(url, { transport: WebSocket, params: { token }, heartbeatIntervalMs: 1000,
  reconnectAfterMs: () => 500 });
socket.onOpen(() => out({ type: "open" }));
socket.onError(() => out({ type: "error" }));
socket.onClose((event) => out({ type: "close", code: event.code }));
socket.connect();

const channel = socket.channel("admin:dashboard", {});
const presence = new Presence(channel);
presence.onSync(() => {
  const tabs = [];
  let shoppers = 0;
  presence.list((shopper, { metas }) => {
    shoppers += 1;
    for (const meta of metas) tabs.push({ shopper, node: meta.node, page: meta.page, items: meta.items });
  });
  out({ type: "presence", shoppers, tabs, at: Date.now() });
});
channel.on("drop", (payload) => out({ type: "drop", payload }));
channel.join()
  .receive("ok", (response) => out({ type: "join_ok", response }))
  .receive("error", (response) => out({ type: "join_error", response }));

readline.createInterface({ input: process.stdin }).on("close", () => socket.disconnect(() => process.exit(0)));
