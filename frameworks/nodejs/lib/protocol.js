'use strict';
// Dispatch graphs (protocol.md §3): the protocol description a service sends at run time.
//
//   graph_root = {method_id: [name, dispatch, upstream]}   3-tuples
//   graph_node = {message_id: [name, next]}                2-tuples
//   next       = nil (stay in the same state) | {} (terminal) | {...} (move there)
//
// A State is one direction's protocol state; a next of null means "stay", and a state
// without messages is terminal.

const { ProtocolError } = require('./errors');

class State {
  constructor(transitions = new Map()) {
    this.byId = transitions; // id -> [name, next State | null]
    this.byName = new Map([...transitions].map(([id, [name]]) => [name, id]));
  }

  get terminal() { return this.byId.size === 0; }

  names() { return [...this.byId.keys()].sort((a, b) => a - b).map((id) => this.byId.get(id)[0]); }
}

const TERMINAL = new State();
const PRIMITIVE = new State(new Map([[0, ['value', TERMINAL]], [1, ['error', TERMINAL]]]));
const STREAMING = new State(new Map([[0, ['write', null]], [1, ['error', TERMINAL]], [2, ['close', TERMINAL]]]));
const isControl = (id) => id >= 65532 && id <= 65535;

class Graph {
  constructor(methods) {
    this.byId = new Map(methods.map((m) => [m.id, m]));
    this.byName = new Map(methods.map((m) => [m.name, m]));
  }

  method(name) { return this.byName.get(name); }

  // names lists the method names in id order, without the control methods unless asked.
  names({ control = false } = {}) {
    return [...this.byId.keys()].sort((a, b) => a - b).filter((id) => control || !isControl(id))
      .map((id) => this.byId.get(id).name);
  }

  // decode reads a graph_root as the decoder gives it (an object with id keys).
  static decode(v) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) {
      throw ProtocolError.frame(`a graph must be a map, got ${JSON.stringify(v)}`);
    }
    const methods = [];
    for (const [key, entry] of entries(v)) {
      if (!Array.isArray(entry) || entry.length < 3) {
        throw ProtocolError.frame(`a root graph entry is id: [name, dispatch, upstream], got ${key}`);
      }
      const up = state(entry[2], 0);
      methods.push({ id: key, name: name(entry[0]), dispatch: state(entry[1], 0), upstream: up === null ? TERMINAL : up });
    }
    return new Graph(methods);
  }
}

function entries(v) {
  const out = [];
  for (const [k, e] of v instanceof Map ? v : Object.entries(v)) {
    const id = Number(k);
    if (!Number.isInteger(id) || id < 0) throw ProtocolError.frame(`a graph key must be an integer, got ${k}`);
    out.push([id, e]);
  }
  return out;
}

function name(v) {
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (typeof v === 'string') return v;
  throw ProtocolError.frame(`a message name must be a raw, got ${JSON.stringify(v)}`);
}

function state(v, depth) {
  if (v === null || v === undefined) return null;
  if (depth > 32) throw ProtocolError.frame('the graph nests too deep');
  if (typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) {
    throw ProtocolError.frame(`a protocol state must be nil or a map, got ${JSON.stringify(v)}`);
  }
  const es = entries(v);
  if (es.length === 0) return TERMINAL;
  const ts = new Map();
  for (const [id, entry] of es) {
    if (!Array.isArray(entry) || entry.length < 2) throw ProtocolError.frame(`a graph entry is id: [name, next], got ${id}`);
    ts.set(id, [name(entry[0]), state(entry[1], depth + 1)]);
  }
  return new State(ts);
}

const control = () => [[65532, ['goaway', TERMINAL]], [65533, ['ping', TERMINAL]], [65534, ['settings', TERMINAL]],
  [65535, ['revoke', TERMINAL]]];
const discard = new State(new Map([[0, ['discard', TERMINAL]], ...control()]));

// The locator's graph, which clients know without resolving it (protocol.md §3.5).
const LOCATOR_GRAPH = new Graph([
  { id: 0, name: 'resolve', dispatch: TERMINAL, upstream: PRIMITIVE },
  { id: 1, name: 'connect', dispatch: TERMINAL, upstream: STREAMING },
  { id: 2, name: 'refresh', dispatch: TERMINAL, upstream: PRIMITIVE },
  { id: 3, name: 'cluster', dispatch: TERMINAL, upstream: PRIMITIVE },
  { id: 4, name: 'publish', dispatch: discard, upstream: PRIMITIVE },
  { id: 5, name: 'routing', dispatch: discard, upstream: STREAMING },
  { id: 6, name: 'uuid', dispatch: TERMINAL, upstream: PRIMITIVE },
]);

module.exports = { State, Graph, TERMINAL, PRIMITIVE, STREAMING, LOCATOR_GRAPH, isControl };
