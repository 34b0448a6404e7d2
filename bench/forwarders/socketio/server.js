// Socket.IO forwarder for bench/relay.py: the same routing as bench/forwarders/bare.py.
// A client connects with auth {id}; "fwd" (target, payload) emits "msg" (payload) to the
// socket registered under target. Websocket transport only, no compression.
// Usage: node server.js PORT PORT_FILE
"use strict";
const http = require("http");
const fs = require("fs");
const { Server } = require("socket.io");

const port = parseInt(process.argv[2] || "0", 10);
const portFile = process.argv[3];
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
});
const peers = new Map();

io.on("connection", (socket) => {
  const me = String((socket.handshake.auth && socket.handshake.auth.id) || socket.id);
  peers.set(me, socket);
  socket.on("fwd", (target, payload) => {
    const peer = peers.get(target);
    if (peer) peer.emit("msg", payload);
  });
  socket.on("disconnect", () => {
    if (peers.get(me) === socket) peers.delete(me);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  const bound = httpServer.address().port;
  if (portFile) fs.writeFileSync(portFile, `${bound}\n`);
});
const stop = () => { io.close(); httpServer.close(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
