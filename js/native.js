'use strict';
// Loads the native addon: in a checkout the local build (js/raftline.<platform>.node, from
// `npm run build`), else the package @raftline/<platform> that npm installed as one of
// raftline's optional dependencies. When neither fits, the error names the platform and what
// to do.

const fs = require('node:fs');
const path = require('node:path');

/** The platforms a binary is published for (see npm/ and the release workflow). */
const PUBLISHED = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc'];

function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl');
  } catch {
    const header = /** @type {any} */ (process.report?.getReport?.())?.header;
    return !header?.glibcVersionRuntime;
  }
}

/** e.g. `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`. */
function platformId() {
  const base = `${process.platform}-${process.arch}`;
  if (process.platform === 'linux') return `${base}-${isMusl() ? 'musl' : 'gnu'}`;
  if (process.platform === 'win32') return `${base}-msvc`;
  return base;
}

/** @returns {typeof import('./binding')} */
function load() {
  const id = platformId();
  const local = path.join(__dirname, `raftline.${id}.node`);
  if (fs.existsSync(local)) return require(local);
  const pkg = `@raftline/${id}`;
  let binding;
  try {
    binding = require(pkg);
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND' || !String(err.message).includes(pkg)) {
      throw new Error(`raftline: the native binary in ${pkg} failed to load: ${err.message}`, { cause: err });
    }
    const what = PUBLISHED.includes(id)
      ? `${pkg} is not installed. npm installs it with raftline unless optional dependencies are ` +
        'left out: reinstall without --omit=optional / --no-optional (and with the lockfile made ' +
        'on any platform, run npm install again on this one).'
      : `no binary is published for ${id} (published: ${PUBLISHED.join(', ')}).`;
    throw new Error(
      `raftline cannot load its native addon on ${id} (Node ${process.version}): ${what} ` +
        'To build it from source, clone the repository and run npm install there (needs Rust).',
      { cause: err },
    );
  }
  const expected = require('../package.json').version;
  const found = require(`${pkg}/package.json`).version;
  if (found !== expected) {
    throw new Error(`raftline ${expected} needs ${pkg} ${expected}, but ${found} is installed: install matching versions`);
  }
  return binding;
}

module.exports = { ...load(), platformId };
