'use strict';
// The Cocaine 0.12 wire: frames [channel, type, args, headers?, ...ignored] (protocol.md
// §1.3), the header table (§5) and the trace headers (§5.4). What this module writes is
// what the core writes: four-element frames, old-spec raws only. It reads everything:
// str8, bin, any integer width, 3- to N-element frames, compressed headers.

const crypto = require('node:crypto');
const { ProtocolError } = require('./errors');
const msgpack = require('./msgpack');

const DEFAULT_MAX_FRAME_SIZE = 64 << 20; // as the Go side's rpc.DefaultMaxFrameSize

const TRACE_ID = 'trace_id';
const SPAN_ID = 'span_id';
const PARENT_ID = 'parent_id';
const ZERO8 = Buffer.alloc(8);
const STATIC_SIZE = 83; // slots 0..82; 0 is reserved
const DYNAMIC_CAPACITY = 4096;
const ENTRY_OVERHEAD = 32;

const e = Buffer.alloc(0);
const b = (s) => Buffer.from(s);
const RFC7541 = [
  [':authority', e], [':method', b('GET')], [':method', b('POST')], [':path', b('/')],
  [':path', b('/index.html')], [':scheme', b('http')], [':scheme', b('https')], [':status', b('200')],
  [':status', b('204')], [':status', b('206')], [':status', b('304')], [':status', b('400')],
  [':status', b('404')], [':status', b('500')], ['accept-charset', e], ['accept-encoding', b('gzip, deflate')],
  ['accept-language', e], ['accept-ranges', e], ['accept', e], ['access-control-allow-origin', e], ['age', e],
  ['allow', e], ['authorization', e], ['cache-control', e], ['content-disposition', e], ['content-encoding', e],
  ['content-language', e], ['content-length', e], ['content-location', e], ['content-range', e],
  ['content-type', e], ['cookie', e], ['date', e], ['etag', e], ['expect', e], ['expires', e], ['from', e],
  ['host', e], ['if-match', e], ['if-modified-since', e], ['if-none-match', e], ['if-range', e],
  ['if-unmodified-since', e], ['last-modified', e], ['link', e], ['location', e], ['max-forwards', e],
  ['proxy-authenticate', e], ['proxy-authorization', e], ['range', e], ['referer', e], ['refresh', e],
  ['retry-after', e], ['server', e], ['set-cookie', e], ['strict-transport-security', e],
  ['transfer-encoding', e], ['user-agent', e], ['vary', e], ['via', e], ['www-authenticate', e],
];
const STATIC_TABLE = [['', e], ...RFC7541, ...Array.from({ length: 18 }, () => ['', e]),
  [TRACE_ID, ZERO8], [SPAN_ID, ZERO8], [PARENT_ID, ZERO8]];
if (STATIC_TABLE.length !== STATIC_SIZE) throw new Error('static header table has the wrong size');

const entrySize = (name, value) => Buffer.byteLength(name) + value.length + ENTRY_OVERHEAD;

// HeaderTable is one direction's table: the static part and a dynamic part (83 = newest).
class HeaderTable {
  constructor() {
    this.dynamic = [];
    this.size = 0;
  }

  get(i) {
    if (i === 0) throw ProtocolError.hpack('header index 0 is reserved');
    if (i < STATIC_SIZE) return STATIC_TABLE[i];
    const d = this.dynamic[i - STATIC_SIZE];
    if (d === undefined) {
      throw ProtocolError.hpack(`header index ${i} is beyond the table (${STATIC_SIZE + this.dynamic.length - 1} entries)`);
    }
    return d;
  }

  store(name, value) {
    const size = entrySize(name, value);
    if (size > DYNAMIC_CAPACITY) { // RFC 7541 §4.4: empties the table, is not stored
      this.dynamic = [];
      this.size = 0;
      return;
    }
    while (this.size + size > DYNAMIC_CAPACITY) {
      const [n, v] = this.dynamic.pop();
      this.size -= entrySize(n, v);
    }
    this.dynamic.unshift([name, Buffer.from(value)]);
    this.size += size;
  }

  // find returns [index of an exact match, index of an entry with that name]; 0 = none.
  find(name, value) {
    let named = 0;
    for (let i = 1; i < STATIC_SIZE; i++) {
      const [n, v] = STATIC_TABLE[i];
      if (n === name && n !== '') {
        if (v.equals(value)) return [i, i];
        if (!named) named = i;
      }
    }
    for (let i = 0; i < this.dynamic.length; i++) {
      const [n, v] = this.dynamic[i];
      if (n === name) {
        if (v.equals(value)) return [STATIC_SIZE + i, STATIC_SIZE + i];
        if (!named) named = STATIC_SIZE + i;
      }
    }
    return [0, named];
  }

  // decode reads element 3 of a frame, applying stored literals in order.
  decode(entries) {
    if (!Array.isArray(entries)) throw ProtocolError.frame(`headers must be an array, got ${kind(entries)}`);
    const out = [];
    for (const en of entries) {
      if (isUint(en)) {
        out.push(this.get(en));
        continue;
      }
      if (!Array.isArray(en) || en.length !== 3) {
        throw ProtocolError.hpack(`a header entry must be an index or a 3-element array, got ${kind(en)}`);
      }
      let [store, name, value] = en;
      if (typeof store !== 'boolean') throw ProtocolError.hpack('the store flag of a header must be a boolean');
      if (isUint(name)) name = this.get(name)[0];
      else if (Buffer.isBuffer(name)) name = name.toString('utf8');
      else throw ProtocolError.hpack(`a header name must be a raw or an index, got ${kind(name)}`);
      if (!Buffer.isBuffer(value)) throw ProtocolError.hpack(`a header value must be a raw, got ${kind(value)}`);
      if (store) this.store(name, value);
      out.push([name, value]);
    }
    return out;
  }
}

// HeaderEncoder encodes one direction's headers: unstored literals [false, name, value]
// (the default, as Cocaine >= 0.12.13.1), or compressed as the original Python framework:
// an exact table match as a bare index, anything else a stored literal, the name by
// index when the table has it.
class HeaderEncoder {
  constructor({ compress = false } = {}) {
    this.compress = compress;
    this.table = new HeaderTable();
  }

  encode(headers) {
    const parts = [msgpack.encodeArrayHeader(headers.length)];
    for (const [name, value] of headers) {
      if (!this.compress) {
        parts.push(Buffer.from([0x93, 0xc2]), msgpack.encode(name), msgpack.encode(value));
        continue;
      }
      const [exact, named] = this.table.find(name, value);
      if (exact) {
        parts.push(msgpack.encode(exact));
        continue;
      }
      parts.push(Buffer.from([0x93, 0xc3]), msgpack.encode(named || name), msgpack.encode(value));
      this.table.store(name, value);
    }
    return Buffer.concat(parts);
  }
}

// normalizeHeaders accepts an object or [name, value] pairs with string or Buffer values.
function normalizeHeaders(headers) {
  if (!headers) return [];
  const items = Array.isArray(headers) ? headers : Object.entries(headers);
  return items.map(([name, value]) => {
    if (typeof value === 'string') value = Buffer.from(value);
    else if (value instanceof Uint8Array) value = Buffer.from(value);
    else throw new TypeError(`cocaine: header ${name} must be a string or a Buffer`);
    return [String(name), value];
  });
}

const le64 = (v) => { const out = Buffer.alloc(8); out.writeBigUInt64LE(BigInt(v)); return out; };
const randomSpan = () => (crypto.randomBytes(8).readBigUInt64LE() % ((1n << 63n) - 2n)) + 1n;

// Trace is a channel's tracing context: three 64-bit ids (BigInts), sent as 8 raw bytes
// each, little-endian. traceId 0 means untraced.
class Trace {
  constructor(traceId, spanId, parentId = 0n) {
    this.traceId = BigInt(traceId);
    this.spanId = BigInt(spanId);
    this.parentId = BigInt(parentId);
  }

  headers() {
    return [[TRACE_ID, le64(this.traceId)], [SPAN_ID, le64(this.spanId)], [PARENT_ID, le64(this.parentId)]];
  }

  // child is a new span under this one, for the calls a handler makes for its request.
  child() { return new Trace(this.traceId, randomSpan(), this.spanId); }

  static create() { return new Trace(randomSpan(), randomSpan(), 0n); }

  // fromHeaders is the trace of a channel whose first frame had these headers, or null.
  static fromHeaders(headers) {
    const ids = {};
    for (const [n, v] of headers) {
      if ((n === TRACE_ID || n === SPAN_ID || n === PARENT_ID) && !(n in ids) && v.length === 8) {
        ids[n] = v.readBigUInt64LE();
      }
    }
    if (Object.keys(ids).length !== 3 || ids[TRACE_ID] === 0n) return null;
    return new Trace(ids[TRACE_ID], ids[SPAN_ID], ids[PARENT_ID]);
  }
}

// Frame is one message. A decoded frame keeps the bytes it came in (wire), and encoding
// it writes its args back exactly as they came, as the Go side does; a frame built in
// code has its args encoded.
class Frame {
  constructor(channel, type, args = [], headers = [], wire = null) {
    this.channel = channel;
    this.type = type;
    this.args = args;
    this.headers = headers;
    this.wire = wire;
  }

  get rawArgs() {
    if (!this.wire) return null;
    let off = skipHead(this.wire);
    off = msgpack.skip(this.wire, msgpack.skip(this.wire, off));
    return this.wire.subarray(off, msgpack.skip(this.wire, off));
  }

  encode(encoder = new HeaderEncoder()) {
    const args = this.wire ? this.rawArgs : msgpack.encode(this.args);
    return Buffer.concat([Buffer.from([0x94]), msgpack.encode(this.channel), msgpack.encode(this.type), args,
      encoder.encode(this.headers)]);
  }
}

// encodeFrame encodes [channel, type, args, headers] as the core does.
function encodeFrame(channel, type, args, headers = [], encoder = null) {
  const w = new msgpack.Writer(64);
  w.u8(0x94);
  msgpack.writeValue(w, channel);
  msgpack.writeValue(w, type);
  msgpack.writeValue(w, args);
  if (headers.length) w.bytes((encoder || new HeaderEncoder()).encode(headers));
  else w.u8(0x90);
  return w.result();
}

function skipHead(b) {
  const c = b[0];
  if (c >= 0x90 && c <= 0x9f) return 1;
  if (c === 0xdc) return 3;
  return 5;
}

// FrameDecoder splits a byte stream into frames. It owns the receive-side header table of
// one connection direction, so frames must be decoded in stream order.
class FrameDecoder {
  constructor(maxFrameSize = DEFAULT_MAX_FRAME_SIZE) {
    this.maxFrameSize = maxFrameSize;
    this.table = new HeaderTable();
    this.buf = Buffer.alloc(0);
  }

  feed(data) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
  }

  // next returns the next complete frame, or null until more bytes are fed.
  next() {
    if (this.buf.length === 0) return null;
    let end;
    try {
      end = msgpack.skip(this.buf, 0);
    } catch (err) {
      throw ProtocolError.parse(err.message);
    }
    if (end < 0) {
      if (this.buf.length > this.maxFrameSize) {
        throw ProtocolError.frame(`a frame exceeds the size limit of ${this.maxFrameSize} bytes`);
      }
      return null;
    }
    const raw = this.buf.subarray(0, end);
    this.buf = this.buf.subarray(end);
    if (raw.length > this.maxFrameSize) {
      throw ProtocolError.frame(`a frame exceeds the size limit of ${this.maxFrameSize} bytes`);
    }
    let obj;
    try {
      obj = msgpack.decode(raw);
    } catch (err) {
      throw ProtocolError.parse(`undecodable msgpack: ${err.message}`);
    }
    if (!Array.isArray(obj)) throw ProtocolError.frame(`a frame must be an array, got ${kind(obj)}`);
    if (obj.length < 3) throw ProtocolError.frame(`a frame has at least 3 elements, got ${obj.length}`);
    const [channel, type, args] = obj;
    if (!isUint(channel)) throw ProtocolError.frame(`the channel id must be a non-negative integer, got ${kind(channel)}`);
    if (!isUint(type)) throw ProtocolError.frame(`the message type must be a non-negative integer, got ${kind(type)}`);
    if (!Array.isArray(args)) throw ProtocolError.frame(`args must be an array, got ${kind(args)}`);
    const headers = obj.length >= 4 ? this.table.decode(obj[3]) : [];
    return new Frame(channel, type, args, headers, raw);
  }

  * [Symbol.iterator]() {
    for (let f = this.next(); f !== null; f = this.next()) yield f;
  }
}

function isUint(v) {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function kind(v) {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'boolean') return 'a boolean';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a float';
  if (Buffer.isBuffer(v)) return 'a raw';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'a map';
  return typeof v;
}

module.exports = {
  DEFAULT_MAX_FRAME_SIZE, TRACE_ID, SPAN_ID, PARENT_ID, STATIC_TABLE, HeaderTable, HeaderEncoder, Trace, Frame,
  FrameDecoder, encodeFrame, normalizeHeaders,
};
