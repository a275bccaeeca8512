// Files in the directories the operator granted (`--dir HOST::/data`),
// through `wasi:filesystem`: paths are the guest's (`/data/notes.txt`). A
// path outside every granted directory, or one that escapes it, fails like
// a missing file; a write to a read-only grant fails too.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

import { Failed } from './errors.js';
import { drop } from './http.js';
import { inside } from './host.js';

const WHY = {
  'no-entry': 'No such file or directory',
  access: 'Permission denied',
  'not-permitted': 'Operation not permitted',
  'read-only': 'Read-only file system',
  'is-directory': 'Is a directory',
  'not-directory': 'Not a directory',
  exist: 'File exists',
};

function failure(path) {
  return (tag) => new Failed(`${path}: ${WHY[tag] ?? tag}`);
}

/** `work(directory, rest)` with the granted directory `path` is under and
 * the rest of the path; the directories' handles are dropped after. */
function under(path, work) {
  const clean = `/${String(path).split('/').filter(Boolean).join('/')}`;
  const preopens = getDirectories();
  try {
    let best;
    for (const [descriptor, guest] of preopens) {
      const root = guest === '/' ? '' : guest.replace(/\/+$/, '');
      if ((clean === root || clean.startsWith(`${root}/`)) && (!best || root.length > best[1].length)) {
        best = [descriptor, root];
      }
    }
    if (!best) throw new Failed(`${path}: No such file or directory (not under a granted directory)`);
    return work(best[0], clean.slice(best[1].length + 1) || '.');
  } finally {
    for (const [descriptor] of preopens) drop(descriptor);
  }
}

function bytesOf(data) {
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('fs.write takes a string, an ArrayBuffer or a typed array');
}

function readAll(stream) {
  const chunks = [];
  let size = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(65536n);
    } catch (e) {
      if (e?.payload?.tag === 'closed') break;
      throw e;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return all;
}

/** The bytes of the file at `path`. */
export function readBytes(path) {
  return inside('files', () => under(path, (dir, rest) => {
    const file = dir.openAt({}, rest, {}, { read: true });
    try {
      const stream = file.readViaStream(0n);
      try {
        return readAll(stream);
      } finally {
        drop(stream);
      }
    } finally {
      drop(file);
    }
  }), failure(path));
}

/** The text (UTF-8) of the file at `path`. */
export function readText(path) {
  return new TextDecoder().decode(readBytes(path));
}

/** Writes `data` (a string or bytes) to `path`, replacing the file;
 * returns the number of bytes written. */
export function write(path, data) {
  const bytes = bytesOf(data);
  return inside('files', () => under(path, (dir, rest) => {
    const file = dir.openAt({}, rest, { create: true, truncate: true }, { write: true });
    try {
      const stream = file.writeViaStream(0n);
      try {
        for (let start = 0; start < bytes.length; start += 4096) {
          stream.blockingWriteAndFlush(bytes.subarray(start, start + 4096));
        }
      } finally {
        drop(stream);
      }
    } finally {
      drop(file);
    }
    return bytes.length;
  }), failure(path));
}

/** The names in the directory at `path`. */
export function list(path) {
  return inside('files', () => under(path, (dir, rest) => {
    const target = rest === '.' ? dir : dir.openAt({}, rest, { directory: true }, { read: true });
    try {
      const entries = target.readDirectory();
      try {
        const names = [];
        for (let entry; (entry = entries.readDirectoryEntry()) !== undefined; ) names.push(entry.name);
        return names.sort();
      } finally {
        drop(entries);
      }
    } finally {
      if (target !== dir) drop(target);
    }
  }), failure(path));
}

export const fs = { readBytes, readText, write, list };
