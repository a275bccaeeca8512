// Outbound HTTP through `wasi:http/outgoing-handler`, so through the
// operator's network policy: a host the operator did not grant throws
// Denied (which, unhandled, is the tool's `denied` error) naming the grant
// it needs. One call is one request: redirects are returned, not followed.
// Synchronous, like the rest of a call.

import { Denied, Failed, InvalidArguments } from './errors.js';
import { Fields, OutgoingBody, OutgoingRequest, handle, inside } from './host.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'];
const DEFAULT_MAX_BODY = 10 * 1024 * 1024;

function target(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidArguments(`${JSON.stringify(url)}: not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new InvalidArguments(`${url}: scheme ${JSON.stringify(u.protocol.replace(':', ''))} is not supported; use http or https`);
  }
  if (!u.hostname) throw new InvalidArguments(`${url}: no host`);
  const scheme = u.protocol.replace(':', '');
  const port = u.port ? Number(u.port) : scheme === 'https' ? 443 : 80;
  return { url, u, scheme, port, host: u.hostname };
}

function hostError(t, tag) {
  switch (String(tag).toLowerCase()) {
    case 'http-request-denied':
      return new Denied(
        `${t.url}: refused by the operator's network policy; it needs a grant such as --allow-host ${t.scheme}://${t.host}:${t.port}`,
      );
    case 'destination-ip-prohibited':
      return new Denied(
        `${t.url}: ${t.host} resolves to a loopback, private, link-local or otherwise special address, which warden refuses unless the grant names that IP literally`,
      );
    case 'http-response-body-size':
      return new Failed(`${t.url}: the response body is larger than the host allows`);
    default:
      return new Failed(`${t.url}: ${tag}`);
  }
}

class Response {
  constructor(status, headers, body, truncated) {
    this.status = status;
    /** [name, value] pairs, in order. */
    this.headers = headers;
    /** The body's bytes (a Uint8Array). */
    this.body = body;
    /** The body was longer than `maxBody` and was cut. */
    this.truncated = truncated;
  }

  /** The first header named `name` (case-insensitive). */
  header(name) {
    const lower = name.toLowerCase();
    return this.headers.find(([k]) => k.toLowerCase() === lower)?.[1];
  }

  text() {
    return new TextDecoder().decode(this.body);
  }

  json() {
    return JSON.parse(this.text());
  }
}

/** Sends one request; `options`: headers (an object), body (a string or
 * Uint8Array), maxBody (bytes of the response body to read). */
export function request(method, url, options = {}) {
  const t = target(url);
  method = String(method).toUpperCase();
  if (!METHODS.includes(method)) {
    throw new InvalidArguments(`${url}: method ${JSON.stringify(method)}: use one of ${METHODS.join(', ')}`);
  }
  const encoder = new TextEncoder();
  let body = options.body;
  if (typeof body === 'string') body = encoder.encode(body);
  const maxBody = Math.max(0, options.maxBody ?? DEFAULT_MAX_BODY);
  return inside(
    'HTTP',
    () => send(t, method, options.headers ?? {}, body, maxBody, encoder),
    (tag) => hostError(t, tag),
  );
}

function send(t, method, headers, body, maxBody, encoder) {
  const entries = Object.entries(headers).map(([k, v]) => [String(k).toLowerCase(), encoder.encode(String(v))]);
  if (body !== undefined && !entries.some(([k]) => k === 'content-length')) {
    // A length, not chunks: what most servers expect of a request body.
    entries.push(['content-length', encoder.encode(String(body.length))]);
  }
  let fields;
  try {
    fields = Fields.fromList(entries);
  } catch (e) {
    if (e?.nativeStub) throw e;
    throw new InvalidArguments(`${t.url}: a header cannot be sent (${e?.payload?.tag ?? e})`);
  }
  const request = new OutgoingRequest(fields);
  const set = (what, work) => {
    try {
      work();
    } catch {
      throw new InvalidArguments(`${t.url}: invalid ${what}`);
    }
  };
  set('method', () => request.setMethod({ tag: method.toLowerCase() }));
  set('scheme', () => request.setScheme({ tag: t.scheme === 'https' ? 'HTTPS' : 'HTTP' }));
  set('authority', () => request.setAuthority(t.u.host));
  set('path', () => request.setPathWithQuery(`${t.u.pathname || '/'}${t.u.search}`));
  // Each resource is dropped before the one it came from: the host refuses
  // to drop a parent whose children live.
  const outgoing = body === undefined ? undefined : request.body();
  let pending;
  try {
    pending = handle(request, undefined);
  } catch (e) {
    drop(outgoing);
    throw e;
  }
  if (outgoing !== undefined) {
    const stream = outgoing.write();
    try {
      for (let start = 0; start < body.length; start += 4096) {
        stream.blockingWriteAndFlush(body.subarray(start, start + 4096));
      }
    } catch {
      drop(stream);
      // The host may have refused the request already: say why.
      throw refusal(t, pending) ?? new Failed(`${t.url}: sending the body failed`);
    }
    drop(stream);
    OutgoingBody.finish(outgoing, undefined);
  }
  let got;
  try {
    while ((got = pending.get()) === undefined) {
      const ready = pending.subscribe();
      try {
        ready.block();
      } finally {
        drop(ready);
      }
    }
  } finally {
    drop(pending);
  }
  if (got.tag === 'err') throw new Failed(`${t.url}: the response was already taken`);
  if (got.val.tag === 'err') throw hostError(t, got.val.val.tag);
  const response = got.val.val;
  try {
    return read(t, response, maxBody);
  } finally {
    drop(response);
  }
}

function read(t, response, maxBody) {
  const decoder = new TextDecoder();
  const fields = response.headers();
  let headers;
  try {
    headers = fields.entries().map(([k, v]) => [k, decoder.decode(v)]);
  } finally {
    drop(fields);
  }
  const status = response.status();
  const incoming = response.consume();
  const chunks = [];
  let size = 0;
  let truncated = false;
  try {
    const stream = incoming.stream();
    try {
      for (;;) {
        let chunk;
        try {
          chunk = stream.blockingRead(BigInt(Math.min(64 * 1024, maxBody - size + 1)));
        } catch (e) {
          if (e?.payload?.tag === 'closed') break;
          throw new Failed(`${t.url}: reading the body failed`);
        }
        chunks.push(chunk);
        size += chunk.length;
        if (size > maxBody) {
          truncated = true;
          break;
        }
      }
    } finally {
      drop(stream);
    }
  } finally {
    drop(incoming);
  }
  const all = new Uint8Array(Math.min(size, maxBody));
  let at = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, all.length - at);
    all.set(part, at);
    at += part.length;
  }
  return new Response(status, headers, all, truncated);
}

/** The host's error for a request it refused, once its answer is there;
 * undefined otherwise. Drops the pending answer. */
function refusal(t, pending) {
  try {
    const ready = pending.subscribe();
    try {
      ready.block();
    } finally {
      drop(ready);
    }
    const got = pending.get();
    return got?.tag === 'ok' && got.val.tag === 'err' ? hostError(t, got.val.val.tag) : undefined;
  } catch {
    return undefined;
  } finally {
    drop(pending);
  }
}

/** Drops a resource now rather than when the collector gets to it. */
export function drop(resource) {
  resource?.[Symbol.dispose]?.();
}

export const http = {
  request,
  get: (url, options = {}) => request('GET', url, options),
  /** POST `body`, or `options.json` as JSON with its content type. */
  post: (url, body, options = {}) => {
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      options = { ...options, headers: { 'content-type': 'application/json', ...options.headers } };
    }
    return request('POST', url, { ...options, body });
  },
};
