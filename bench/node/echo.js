'use strict';
// Echo reference server: every byte straight back, the way Node's docs write it.
const { parseCli, serve } = require('./common');

const opts = parseCli('127.0.0.1:8080');
serve('echo', opts.listen, (socket) => {
  // pipe() is the one place Node applies backpressure for us: it pauses reading while the
  // socket's write buffer is over its highWaterMark. It also end()s us after the peer's FIN.
  socket.pipe(socket);
}, opts.maxConnections);
