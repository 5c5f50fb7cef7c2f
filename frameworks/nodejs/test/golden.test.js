'use strict';
// The cross-language conformance suite: every golden frame in rpc/testdata/frames is
// decoded and re-encoded byte for byte (plain and compressed headers), and its args are
// decoded to values and encoded again, as old-spec msgpack.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Encoder } = require('@msgpack/msgpack');
const wire = require('../lib/wire');
const msgpack = require('../lib/msgpack');

const FRAMES = path.join(__dirname, '..', '..', '..', 'rpc', 'testdata', 'frames');
const index = JSON.parse(fs.readFileSync(path.join(FRAMES, 'index.json'), 'utf8'));

// The type bytes of new-spec strings, binaries and extensions.
const NEW_SPEC = new Set([0xd9, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8]);

// heads lists the type byte of every object in a msgpack encoding, in order.
function heads(b) {
  const out = [];
  let i = 0;
  let pending = 1;
  while (pending > 0 && i < b.length) {
    const c = b[i];
    out.push(c);
    pending--;
    if (c <= 0x7f || c >= 0xe0 || c === 0xc0 || c === 0xc2 || c === 0xc3) i += 1;
    else if (c <= 0x8f) { pending += 2 * (c & 0x0f); i += 1; } else if (c <= 0x9f) { pending += c & 0x0f; i += 1; } else if (c <= 0xbf) i += 1 + (c & 0x1f);
    else if (c === 0xcc || c === 0xd0) i += 2;
    else if (c === 0xcd || c === 0xd1) i += 3;
    else if (c === 0xce || c === 0xd2 || c === 0xca) i += 5;
    else if (c === 0xcf || c === 0xd3 || c === 0xcb) i += 9;
    else if (c === 0xd9 || c === 0xc4) i += 2 + b[i + 1];
    else if (c === 0xda || c === 0xc5) i += 3 + b.readUInt16BE(i + 1);
    else if (c === 0xdb || c === 0xc6) i += 5 + b.readUInt32BE(i + 1);
    else if (c === 0xdc || c === 0xde) { pending += (c === 0xde ? 2 : 1) * b.readUInt16BE(i + 1); i += 3; } else if (c === 0xdd || c === 0xdf) { pending += (c === 0xdf ? 2 : 1) * b.readUInt32BE(i + 1); i += 5; } else break;
  }
  return out;
}
const oldSpecOnly = (b) => !heads(b).some((h) => NEW_SPEC.has(h));

// fromJSON turns index.json's rendering of a value into what the decoder gives.
function fromJSON(v) {
  if (typeof v === 'string') return Buffer.from(v);
  if (Array.isArray(v)) return v.map(fromJSON);
  if (v !== null && typeof v === 'object') {
    if (Object.keys(v).length === 1 && 'hex' in v) return Buffer.from(v.hex, 'hex');
    return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, fromJSON(e)]));
  }
  return v;
}

// intKeyed turns objects whose keys are all integers back into Maps with integer keys.
function intKeyed(v) {
  if (Array.isArray(v)) return v.map(intKeyed);
  if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) {
    const entries = Object.entries(v);
    if (entries.length && entries.every(([k]) => /^[0-9]+$/.test(k))) {
      return new Map(entries.map(([k, e]) => [Number(k), intKeyed(e)]));
    }
    return Object.fromEntries(entries.map(([k, e]) => [k, intKeyed(e)]));
  }
  return v;
}

function decodeAll(data, chunk) {
  const d = new wire.FrameDecoder();
  const out = [];
  const step = chunk || data.length || 1;
  for (let i = 0; i < data.length; i += step) {
    d.feed(data.subarray(i, i + step));
    out.push(...d);
  }
  return out;
}

test('the index lists every golden file', () => {
  assert.ok(index.length >= 20);
  for (const g of index) assert.ok(fs.existsSync(path.join(FRAMES, g.file)), g.file);
});

for (const g of index) {
  test(`golden ${g.name}: decode and re-encode byte for byte`, () => {
    const data = fs.readFileSync(path.join(FRAMES, g.file));
    let frames;
    for (const chunk of [0, 1, 7]) { // whole, byte by byte, in odd pieces
      frames = decodeAll(data, chunk);
      assert.equal(frames.length, g.frames.length);
      frames.forEach((f, i) => {
        const w = g.frames[i];
        assert.deepEqual([f.channel, f.type], [w.channel, w.type]);
        assert.equal(f.rawArgs.toString('hex'), w.args_hex);
        assert.deepEqual(f.args, fromJSON(w.args));
        assert.deepEqual(f.headers.map(([n, v]) => [n, v.toString('hex')]), w.headers.map((h) => [h.name, h.value_hex]));
      });
    }
    for (const [compress, want] of [[false, g.canonical], [true, g.canonical_compressed]]) {
      const enc = new wire.HeaderEncoder({ compress });
      const out = Buffer.concat(frames.map((f) => f.encode(enc)));
      assert.equal(out.toString('hex'), want, `compress=${compress}`);
    }
  });

  test(`golden ${g.name}: values re-encode as old-spec msgpack`, () => {
    for (const w of g.frames) {
      const args = msgpack.decode(Buffer.from(w.args_hex, 'hex'));
      const packed = msgpack.encode(args);
      assert.ok(oldSpecOnly(packed), packed.toString('hex'));
      if (g.name === 'str8-bin') {
        assert.equal(packed.toString('hex'), '92a3616263a20102'); // str8 and bin come out as raws
      } else if (g.name === 'resolve-reply') {
        // JS objects have string keys: an int-keyed map (the graph) comes back with
        // string keys, which the client reads as ids; a Map keeps them as integers.
        const again = msgpack.encode(intKeyed(args));
        assert.equal(again.toString('hex'), w.args_hex);
      } else {
        assert.equal(packed.toString('hex'), w.args_hex);
      }
      if (g.frames.length === 1 && g.name !== 'str8-bin' && g.name !== 'resolve-reply') {
        const hs = w.headers.map((h) => [h.name, Buffer.from(h.value_hex, 'hex')]);
        assert.equal(wire.encodeFrame(w.channel, w.type, args, hs).toString('hex'), g.canonical);
        assert.equal(new wire.Frame(w.channel, w.type, args, hs).encode().toString('hex'), g.canonical);
      }
    }
  });
}

test('the checker sees new-spec bytes', () => {
  assert.equal(oldSpecOnly(Buffer.from('92d903616263c4020102', 'hex')), false);
  assert.equal(oldSpecOnly(Buffer.from('92a3616263a20102', 'hex')), true);
});

test('why the encoder shim: @msgpack/msgpack writes str8 and bin', () => {
  const lib = new Encoder().encode(['x'.repeat(40), new Uint8Array([1])]);
  assert.equal(oldSpecOnly(Buffer.from(lib)), false);
  assert.ok(oldSpecOnly(msgpack.encode(['x'.repeat(40), new Uint8Array([1])])));
});
