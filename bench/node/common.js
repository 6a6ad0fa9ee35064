'use strict';
// Shared by the Node reference servers: CLI flags, ADDR parsing, listeners, shutdown.
const fs = require('fs');
const net = require('net');

const USAGE = `usage: node <echo|chat|hub>.js [--listen ADDR]... [--max-line N] [--max-frame N]
       [--chat-echo-self] [--hub-token SECRET] [--register-timeout MS] [--max-connections N]
ADDR: HOST:PORT | PORT (= 127.0.0.1:PORT) | [V6]:PORT | unix:PATH`;

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error(USAGE);
  process.exit(msg ? 2 : 0);
}

// The contract's four ADDR forms, as options for server.listen() / net.connect().
function parseAddr(s) {
  if (s.startsWith('unix:') && s.length > 5) return { path: s.slice(5) };
  const m = /^(\d+)$/.exec(s) || /^\[([^\]]+)\]:(\d+)$/.exec(s) || /^([^:[\]]+):(\d+)$/.exec(s);
  const [host, port] = !m ? [] : m.length === 2 ? ['127.0.0.1', m[1]] : [m[1], m[2]];
  if (!m || Number(port) > 65535 || (s.startsWith('[') && !net.isIPv6(host))) {
    throw new Error(`bad address ${JSON.stringify(s)}`);
  }
  return { host, port: Number(port) };
}

// "127.0.0.1:80" / "[::1]:80": the contract's label, session id and listening-line format.
const hostPort = (address, port) => (net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`);

function parseCli(defaultListen) {
  // The same defaults as netloop serve, where Node can express them (Node's maxConnections
  // has no default: it cannot read the fd limit).
  const opts = {
    listen: [], maxLine: 65536, maxFrame: 1048576, chatEchoSelf: false, hubToken: null,
    registerTimeoutMs: 10000, maxConnections: null,
  };
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = () => (i + 1 < args.length ? args[++i] : usage(`${flag} needs a value`));
    const count = () => {
      const v = value();
      return /^[1-9]\d*$/.test(v) ? Number(v) : usage(`${flag} wants a positive integer, got ${v}`);
    };
    try {
      switch (flag) {
        case '--listen': opts.listen.push(parseAddr(value())); break;
        case '--max-line': opts.maxLine = count(); break;
        case '--max-frame': opts.maxFrame = count(); break;
        case '--chat-echo-self': opts.chatEchoSelf = true; break;
        case '--hub-token': opts.hubToken = value(); break;
        case '--register-timeout': {
          const v = value();
          if (!/^\d+$/.test(v)) usage(`--register-timeout wants milliseconds (0 = off), got ${v}`);
          opts.registerTimeoutMs = Number(v);
          break;
        }
        case '--max-connections': opts.maxConnections = count(); break;
        case '-h': case '--help': usage(); break;
        default: usage(`unknown argument ${flag}`);
      }
    } catch (err) {
      usage(err.message);
    }
  }
  if (opts.listen.length === 0) opts.listen.push(parseAddr(defaultListen));
  return opts;
}

// One net.Server per --listen, all feeding onConnection(socket, label). Prints the contract's
// "<service> listening on <address>" line per listener; SIGTERM/SIGINT stop it cleanly.
function serve(service, addrs, onConnection, maxConnections = null) {
  const sockets = new Set();
  let unixPeers = 0; // Unix peers have no address: the contract labels them unix:1, unix:2, ...
  const servers = addrs.map((addr) => {
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      // Peers vanish mid-write (ECONNRESET, EPIPE); 'close' follows and the services clean up
      // there, so the error itself needs no handling -- but unhandled it would kill the process.
      socket.on('error', () => {});
      const label = socket.remoteAddress === undefined
        ? `unix:${++unixPeers}` : hostPort(socket.remoteAddress, socket.remotePort);
      onConnection(socket, label);
    });
    if (maxConnections !== null) server.maxConnections = maxConnections;
    server.on('error', (err) => {
      console.error(`${service}: ${err.message}`);
      process.exit(1);
    });
    // A server killed with SIGKILL leaves its socket file behind, and listen() would then fail.
    if (addr.path) try { if (fs.statSync(addr.path).isSocket()) fs.unlinkSync(addr.path); } catch {}
    server.listen(addr, () => {
      const a = server.address();
      console.log(`${service} listening on ${typeof a === 'string' ? `unix:${a}` : hostPort(a.address, a.port)}`);
    });
    return server;
  });

  let stopping = false;
  const stop = () => {
    if (stopping) process.exit(0); // a second signal means "now"
    stopping = true;
    for (const server of servers) server.close(); // also unlinks unix socket files
    for (const socket of sockets) socket.end();
    // end() waits for queued output; a peer that never reads would keep us alive forever.
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { parseAddr, parseCli, serve, hostPort };
