'use strict';
// msgpack as Cocaine 0.12 speaks it. Decoding is @msgpack/msgpack's, with raws (str,
// str8, bin) as Buffers. Encoding is ours: the library writes str8 and bin, which the
// oldest peers reject, and has no option to write old-spec raws (fixraw, raw16, raw32)
// only; this small encoder does.

const { Decoder } = require('@msgpack/msgpack');

const decoder = new Decoder({ rawStrings: true });

// decode decodes one value; raws come back as Buffers, maps as objects.
function decode(bytes) {
  return buffers(decoder.decode(bytes));
}

// buffers turns the decoder's Uint8Arrays into Buffers (views, no copy).
function buffers(v) {
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = buffers(v[i]);
    return v;
  }
  if (v !== null && typeof v === 'object') {
    for (const k of Object.keys(v)) v[k] = buffers(v[k]);
  }
  return v;
}

class Writer {
  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
    this.len = 0;
  }

  ensure(n) {
    if (this.len + n <= this.buf.length) return;
    const nb = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(nb, 0, 0, this.len);
    this.buf = nb;
  }

  u8(b) { this.ensure(1); this.buf[this.len++] = b; }
  bytes(src) { this.ensure(src.length); this.buf.set(src, this.len); this.len += src.length; }
  result() { return this.buf.subarray(0, this.len); }
}

function writeHead(w, fix, fixMax, b16, b32, n) {
  if (n <= fixMax) return w.u8(fix | n);
  if (n < 0x10000) { w.ensure(3); w.buf[w.len++] = b16; w.buf.writeUInt16BE(n, w.len); w.len += 2; return; }
  w.ensure(5); w.buf[w.len++] = b32; w.buf.writeUInt32BE(n, w.len); w.len += 4;
}

function writeInt(w, n) {
  // n is an integer Number or a BigInt; the smallest encoding, as msgpack-c does.
  if (typeof n === 'number' && !Number.isSafeInteger(n)) n = BigInt(n);
  if (typeof n === 'bigint') {
    if (n >= 0n && n <= 0xffffffffffffffffn) {
      if (n <= 0xffffffffn) return writeInt(w, Number(n));
      w.ensure(9); w.buf[w.len++] = 0xcf; w.buf.writeBigUInt64BE(n, w.len); w.len += 8; return;
    }
    if (n < 0n && n >= -0x8000000000000000n) {
      if (n >= -0x80000000n) return writeInt(w, Number(n));
      w.ensure(9); w.buf[w.len++] = 0xd3; w.buf.writeBigInt64BE(n, w.len); w.len += 8; return;
    }
    throw new TypeError(`cocaine: integer ${n} does not fit in 64 bits`);
  }
  w.ensure(9);
  const b = w.buf;
  if (n >= 0) {
    if (n < 0x80) { b[w.len++] = n; return; }
    if (n < 0x100) { b[w.len++] = 0xcc; b[w.len++] = n; return; }
    if (n < 0x10000) { b[w.len++] = 0xcd; b.writeUInt16BE(n, w.len); w.len += 2; return; }
    if (n < 0x100000000) { b[w.len++] = 0xce; b.writeUInt32BE(n, w.len); w.len += 4; return; }
    b[w.len++] = 0xcf; b.writeBigUInt64BE(BigInt(n), w.len); w.len += 8; return;
  }
  if (n >= -32) { b[w.len++] = n & 0xff; return; }
  if (n >= -0x80) { b[w.len++] = 0xd0; b.writeInt8(n, w.len); w.len += 1; return; }
  if (n >= -0x8000) { b[w.len++] = 0xd1; b.writeInt16BE(n, w.len); w.len += 2; return; }
  if (n >= -0x80000000) { b[w.len++] = 0xd2; b.writeInt32BE(n, w.len); w.len += 4; return; }
  b[w.len++] = 0xd3; b.writeBigInt64BE(BigInt(n), w.len); w.len += 8;
}

function writeRaw(w, bytes) {
  writeHead(w, 0xa0, 31, 0xda, 0xdb, bytes.length);
  w.bytes(bytes);
}

function writeValue(w, v, depth = 0) {
  if (depth > 512) throw new TypeError('cocaine: value nests too deep to encode');
  if (v === null || v === undefined) return w.u8(0xc0);
  switch (typeof v) {
    case 'boolean': return w.u8(v ? 0xc3 : 0xc2);
    case 'number':
      if (Number.isInteger(v)) return writeInt(w, v);
      w.ensure(9); w.buf[w.len++] = 0xcb; w.buf.writeDoubleBE(v, w.len); w.len += 8; return;
    case 'bigint': return writeInt(w, v);
    case 'string': return writeRaw(w, Buffer.from(v, 'utf8'));
    default:
  }
  if (v instanceof Uint8Array) return writeRaw(w, v);
  if (ArrayBuffer.isView(v)) return writeRaw(w, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  if (Array.isArray(v)) {
    writeHead(w, 0x90, 15, 0xdc, 0xdd, v.length);
    for (const e of v) writeValue(w, e, depth + 1);
    return;
  }
  if (v instanceof Map) {
    writeHead(w, 0x80, 15, 0xde, 0xdf, v.size);
    for (const [k, e] of v) { writeValue(w, k, depth + 1); writeValue(w, e, depth + 1); }
    return;
  }
  if (typeof v === 'object') {
    const keys = Object.keys(v).filter((k) => v[k] !== undefined);
    writeHead(w, 0x80, 15, 0xde, 0xdf, keys.length);
    for (const k of keys) { writeRaw(w, Buffer.from(k, 'utf8')); writeValue(w, v[k], depth + 1); }
    return;
  }
  throw new TypeError(`cocaine: cannot encode a ${typeof v} as msgpack`);
}

// encode encodes one value as old-spec msgpack: strings and Buffers both become raws;
// objects become maps with string keys, Maps keep their keys' types.
function encode(v) {
  const w = new Writer();
  writeValue(w, v);
  return w.result();
}

// encodeArrayHeader is the head of an array of n elements.
function encodeArrayHeader(n) {
  const w = new Writer(5);
  writeHead(w, 0x90, 15, 0xdc, 0xdd, n);
  return w.result();
}

// skip returns the offset just after the object at off, or -1 if b ends inside it.
// It throws on bytes that start no object (0xc1).
function skip(b, off) {
  let pending = 1;
  while (pending > 0) {
    if (off >= b.length) return -1;
    const c = b[off];
    pending--;
    let size = 1;
    let body = 0;
    if (c <= 0x7f || c >= 0xe0 || c === 0xc0 || c === 0xc2 || c === 0xc3) {
      // one byte
    } else if (c <= 0x8f) pending += 2 * (c & 0x0f);
    else if (c <= 0x9f) pending += c & 0x0f;
    else if (c <= 0xbf) body = c & 0x1f;
    else {
      const need = (n) => (off + 1 + n <= b.length);
      switch (c) {
        case 0xcc: case 0xd0: body = 1; break;
        case 0xcd: case 0xd1: body = 2; break;
        case 0xce: case 0xd2: case 0xca: body = 4; break;
        case 0xcf: case 0xd3: case 0xcb: body = 8; break;
        case 0xd4: body = 2; break;
        case 0xd5: body = 3; break;
        case 0xd6: body = 5; break;
        case 0xd7: body = 9; break;
        case 0xd8: body = 17; break;
        case 0xc4: case 0xd9: if (!need(1)) return -1; size = 2; body = b[off + 1]; break;
        case 0xc5: case 0xda: if (!need(2)) return -1; size = 3; body = b.readUInt16BE(off + 1); break;
        case 0xc6: case 0xdb: if (!need(4)) return -1; size = 5; body = b.readUInt32BE(off + 1); break;
        case 0xc7: if (!need(1)) return -1; size = 2; body = b[off + 1] + 1; break;
        case 0xc8: if (!need(2)) return -1; size = 3; body = b.readUInt16BE(off + 1) + 1; break;
        case 0xc9: if (!need(4)) return -1; size = 5; body = b.readUInt32BE(off + 1) + 1; break;
        case 0xdc: if (!need(2)) return -1; size = 3; pending += b.readUInt16BE(off + 1); break;
        case 0xdd: if (!need(4)) return -1; size = 5; pending += b.readUInt32BE(off + 1); break;
        case 0xde: if (!need(2)) return -1; size = 3; pending += 2 * b.readUInt16BE(off + 1); break;
        case 0xdf: if (!need(4)) return -1; size = 5; pending += 2 * b.readUInt32BE(off + 1); break;
        default: throw new RangeError(`byte 0x${c.toString(16)} starts no msgpack object`);
      }
    }
    if (off + size + body > b.length) return -1;
    off += size + body;
  }
  return off;
}

module.exports = { decode, encode, encodeArrayHeader, skip, Writer, writeValue };
