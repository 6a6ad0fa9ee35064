'use strict';
// The npm packages the web tests drive (pinned in package.json / package-lock.json). A missing
// one fails loudly with the install command: the tests never skip.
const path = require('path');

function need(name) {
  try {
    return require(name);
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err;
    console.error(`FAIL: npm package "${name}" is not installed; run: npm ci --prefix ${path.relative(process.cwd(), __dirname) || '.'} (scripts/test does this)`);
    process.exit(2);
  }
}

// A promise for the next `event` on an emitter, bounded by the script's deadline.
function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args.length > 1 ? args : args[0])));
}

module.exports = { need, once };
