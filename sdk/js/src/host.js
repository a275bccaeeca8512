// The host's interfaces, as the component imports them. Natively (a
// project's tests, run with `node --import warden-plugin/native`) these
// specifiers resolve to native-host.js, which logs to stderr and refuses
// the rest.

import { log as hostLog } from 'warden:plugin/log@0.1.0';
import { complete as hostComplete } from 'warden:plugin/llm@0.1.0';
import * as hostMemory from 'warden:plugin/memory@0.1.0';
import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import { Fields, OutgoingBody, OutgoingRequest } from 'wasi:http/types@0.2.12';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';

import { Denied, Failed } from './errors.js';

export { Fields, OutgoingBody, OutgoingRequest, getEnvironment, handle, hostComplete, hostLog, hostMemory };

/** Runs `work()`, which calls the host; the host's error variant
 * (`error.payload`) becomes the kit's error through `errors(tag, message)`,
 * and natively a Failed that says where this works. */
export function inside(what, work, errors = defaultErrors(what)) {
  try {
    return work();
  } catch (e) {
    if (e?.nativeStub) {
      throw new Failed(`${what} is only available inside warden (build the plugin and call it there)`);
    }
    // A WIT variant arrives as { tag, val }, an enum as its case's name.
    const payload = e?.payload;
    if (typeof payload === 'string') throw errors(payload, '');
    if (payload && typeof payload === 'object' && 'tag' in payload) {
      throw errors(String(payload.tag), payload.val === undefined ? '' : String(payload.val));
    }
    throw e;
  }
}

function defaultErrors(what) {
  return (tag, message) =>
    tag === 'denied' || tag === 'budget-exceeded'
      ? new Denied(`${what} ${tag}: ${message}`)
      : new Failed(`${what} ${tag}: ${message}`);
}

/** Numbers the host gives as u64/s64 (BigInt in JS), as plain numbers. */
export function plain(value) {
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}
